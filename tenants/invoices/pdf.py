"""An invoice as a PDF a customer can read (fpdf2: pure Python, no system packages).

The built-in Helvetica covers Latin-1 only; other characters are written as their closest
Latin form (accents dropped) or ``?``, so no customer name can break a document, and amounts
carry the currency's ISO code rather than a symbol the font may lack.
The file is stamped with the invoice's last change, so one version is always the same bytes.
"""

from __future__ import annotations

import datetime
import unicodedata
from decimal import Decimal

from fpdf import FPDF

from atrium.tenants.invoices import money
from atrium.tenants.invoices.models import Invoice

_ENCODING = "latin-1"
_WIDTHS = (86, 20, 28, 18, 30)  # description, quantity, unit price, tax, amount (mm)


def _text(value: object) -> str:
    """``value`` in characters the core font can draw."""
    text = str(value)
    try:
        text.encode(_ENCODING)
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for char in text:
        try:
            char.encode(_ENCODING)
            out.append(char)
        except UnicodeEncodeError:
            base = unicodedata.normalize("NFKD", char).encode(_ENCODING, "ignore").decode(_ENCODING)
            out.append(base or "?")
    return "".join(out)


def _date(value: datetime.date | None) -> str:
    return value.isoformat() if value else "-"


class _Document(FPDF):
    """A4 pages; a draft's every page is stamped DRAFT (``header`` runs on each new page,
    also those a long list of lines breaks onto)."""

    def __init__(self, draft: bool) -> None:
        super().__init__(format="A4")
        self.draft = draft

    def header(self) -> None:
        if not self.draft:
            return
        with self.local_context(), self.rotation(35, x=105, y=150):
            self.set_font("Helvetica", "B", 90)
            self.set_text_color(225, 225, 225)
            self.text(40, 170, "DRAFT")


def render_pdf(invoice: Invoice, seller: str) -> bytes:
    currency = invoice.currency

    def amount(value: int) -> str:
        return _text(money.formatted(value, currency, code=True))

    pdf = _Document(draft=invoice.status == "draft")
    pdf.set_creation_date(invoice.updated_at)
    pdf.set_title(_text(f"Invoice {invoice.number or 'DRAFT'}"))
    pdf.set_author(_text(seller))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 20)
    pdf.cell(0, 10, _text(seller), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    title = f"Invoice {invoice.number}" if invoice.number else "Invoice (DRAFT)"
    pdf.cell(0, 8, _text(title), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 6, _text(f"Status: {invoice.status}"), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(
        0,
        6,
        f"Issued: {_date(invoice.issue_date)}    Due: {_date(invoice.due_date)}",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 6, "Bill to", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    pdf.cell(0, 6, _text(invoice.customer_name), new_x="LMARGIN", new_y="NEXT")
    if invoice.customer_email:
        pdf.cell(0, 6, _text(invoice.customer_email), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    pdf.set_font("Helvetica", "", 10)
    # fpdf2's table: a long description wraps within its column (whole, never cut), and the
    # headings repeat on every page the lines run onto.
    with pdf.table(
        col_widths=_WIDTHS,
        width=sum(_WIDTHS),
        align="LEFT",
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        v_align="TOP",
        borders_layout="HORIZONTAL_LINES",
        line_height=5,
    ) as table:
        table.row(("Description", "Qty", "Unit price", "Tax", "Amount"))
        for item in invoice.items:
            line = money.Line(Decimal(item["quantity"]), item["unit_price"], Decimal(item["tax_rate"]))
            line_amount, _ = money.line_amounts(line)
            table.row(
                (
                    _text(item["description"]),
                    item["quantity"],
                    amount(item["unit_price"]),
                    f"{item['tax_rate']}%",
                    amount(line_amount),
                )
            )
    pdf.ln(3)
    for label, value in (
        ("Subtotal", invoice.subtotal),
        ("Tax", invoice.tax),
        ("Total", invoice.total),
        ("Paid", invoice.amount_paid),
        ("Amount due", invoice.amount_due),
    ):
        pdf.set_font("Helvetica", "B" if label in {"Total", "Amount due"} else "", 10)
        pdf.cell(sum(_WIDTHS[:-1]), 6, label, align="R")
        pdf.cell(_WIDTHS[-1], 6, amount(value), align="R", new_x="LMARGIN", new_y="NEXT")
    if invoice.notes:
        pdf.ln(4)
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5, _text(invoice.notes))
    return bytes(pdf.output())
