"""/invoices: exact money, a status machine and gapless numbers (API.md §10).

Like ``atrium.platform.web.resources``, this module does not use ``from __future__ import
annotations``: the handlers are built at runtime and Litestar reads their annotations.
"""

import datetime
import uuid
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy import Text, bindparam, cast, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from atrium.platform.db.queued_inserts import queue_statement
from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import read
from atrium.platform.settings import Settings
from atrium.platform.tenancy.registry import Tenant
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.actions import Action
from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.concurrency import next_updated_at
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.listing import Filter
from atrium.platform.web.resources import ResourceSpec
from atrium.platform.web.services import CrudService
from atrium.tenants.invoices.models import Invoice, InvoiceCounter
from atrium.tenants.invoices.pdf import render_pdf
from atrium.tenants.invoices.rules import currency_error, invoice_rules, item_dict
from atrium.tenants.invoices.schemas import InvoiceCreate, InvoiceRead, InvoiceUpdate, Payment

RESOURCE = "invoices"
NUMBER_PREFIX, NUMBER_DIGITS = "INV-", 6
NUMBER_FORMAT = f"{NUMBER_PREFIX}{{:0{NUMBER_DIGITS}d}}"
COUNTER = "invoices"
# What finalize writes besides the number (``_numbered``).
_FINALIZED = ("status", "issue_date", "updated_at")


def _numbered() -> Any:
    """Finalize's last statement: bump the tenant's counter row and number the invoice.

    The counter row stays locked until the transaction ends, so concurrent finalizes wait
    their turn and a rollback gives the number back (gapless; a sequence would skip). It
    is queued and sent in one pipeline with the COMMIT (``queued_inserts.queue_statement``),
    so the lock is held for the server's work on both only, never across a round trip or
    the app's turn on its event loop (bench/RESULTS.md, issue 21). Its caller has locked
    the draft and checked it (``CrudService.act``): the UPDATE always finds its row, and
    the bump (which a data-modifying CTE runs whether or not the UPDATE matches) never skips.
    Parameters: ``invoice_id``, ``counter``, and the columns of ``_FINALIZED``.
    """
    bump = (
        insert(InvoiceCounter)
        .values(name=bindparam("counter"), last=1)
        .on_conflict_do_update(index_elements=[InvoiceCounter.name], set_={"last": InvoiceCounter.last + 1})
        .returning(InvoiceCounter.last)
        .cte("bump")
    )
    digits = cast(bump.c.last, Text)
    invoices = Invoice.__table__
    # NUMBER_FORMAT in SQL: at least NUMBER_DIGITS digits, more once they run out.
    width = func.greatest(NUMBER_DIGITS, func.length(digits))
    number = select(literal(NUMBER_PREFIX) + func.lpad(digits, width, "0")).scalar_subquery()
    finalized = {name: bindparam(name, type_=invoices.c[name].type) for name in _FINALIZED}
    return (
        update(invoices)
        .where(invoices.c.id == bindparam("invoice_id", type_=invoices.c.id.type))
        .values(number=number, **finalized)
        .returning(invoices.c.number)
    )


_NUMBERED = _numbered()


def _invalid(errors: list[dict[str, str]]) -> None:
    if errors:
        raise problem(422, "The invoice is not valid.", errors=errors)


class InvoiceService(CrudService[Invoice]):
    model = Invoice

    def _computed(self, values: dict[str, Any], current: Invoice | None = None) -> dict[str, Any]:
        """``values`` with the totals worked out from the lines; 422 naming every bad field."""
        if values.get("items") is not None:
            refuse_nul_characters({"items": [item_dict(item) for item in values["items"]]})
        checked = dict(values)
        if current is not None:  # a change of one date is checked against the other's stored value
            for name in ("issue_date", "due_date"):
                checked.setdefault(name, getattr(current, name))
        _invalid(invoice_rules(checked))
        for name in ("items", "subtotal", "tax", "total"):
            if name in checked:
                values[name] = checked[name]
        return values

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return self._computed(values)

    async def prepare_update(self, item: Invoice, changes: dict[str, Any]) -> dict[str, Any]:
        self.check_state(item, {"draft"}, "a change")
        return self._computed(changes, item)

    async def before_delete(self, item: Invoice) -> None:
        self.check_state(item, {"draft"}, "deleting it")

    # -- actions ----------------------------------------------------------------------

    async def finalize(self, item: Invoice, _data: None) -> None:
        issue = item.issue_date or datetime.datetime.now(datetime.UTC).date()
        if item.due_date is not None and item.due_date < issue:
            raise problem(
                422,
                "The due date is before the issue date.",
                # The stored invoice's field: the action has no body to name it in.
                errors=[
                    {
                        "field": "due_date",
                        "message": f"must be on or after the issue date {issue}",
                        "source": "row",
                    }
                ],
            )
        values = {"status": "open", "issue_date": issue, "updated_at": next_updated_at(item.updated_at)}

        def numbered(row: Any) -> None:
            # What the statement wrote, known to the ORM as written: no flush repeats it.
            for name, value in {**values, "number": row[0]}.items():
                set_committed_value(item, name, value)

        # Every write of the finalize is this one statement, after every check.
        queue_statement(
            self.session, _NUMBERED, {**values, "invoice_id": item.id, "counter": COUNTER}, numbered
        )

    async def pay(self, item: Invoice, data: Payment) -> None:
        due = item.total - item.amount_paid
        amount = due if data.amount is None else data.amount
        if amount <= 0 or amount > due:
            raise problem(
                422,
                "The payment is not valid.",
                errors=[{"field": "amount", "message": f"must be 1 to the amount due ({due})"}],
            )
        item.amount_paid += amount
        if item.amount_paid == item.total:
            item.status = "paid"

    async def void(self, item: Invoice, _data: None) -> None:
        item.status = "void"

    async def mark_uncollectible(self, item: Invoice, _data: None) -> None:
        item.status = "uncollectible"

    async def tenant_name(self) -> str:
        name = await self.session.scalar(select(Tenant.name).where(Tenant.id == self.tenant.id))
        return name or self.tenant.slug


def invoice_handlers() -> list[Any]:
    @get(
        "/{item_id:uuid}/pdf",
        guards=[requires(read(RESOURCE))],
        operation_id="get_invoice_pdf",
        summary="The invoice as a PDF document",
        description=(
            "Seller, customer, lines, totals in the currency, number and dates; a draft is marked DRAFT."
        ),
        media_type="application/pdf",
        responses=problem_responses(401, 403, 404, 503),
        response_headers=[
            ResponseHeader(
                name="Content-Disposition", description='inline; filename="…"', documentation_only=True
            )
        ],
    )
    async def get_invoice_pdf(
        db_session: NamedDependency[AsyncSession],
        tenant: NamedDependency[ResolvedTenant],
        settings: NamedDependency[Settings],
        request: Request,
        item_id: FromPath[uuid.UUID],
    ) -> Response[bytes]:
        service = InvoiceService(db_session, tenant, request.user, settings)
        invoice = await service.get(item_id)
        seller = await service.tenant_name()
        document = render_pdf(invoice, seller)
        name = invoice.number or f"draft-{invoice.id}"
        return Response(
            document,
            media_type="application/pdf",
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": f'inline; filename="{name}.pdf"',
            },
        )

    return [get_invoice_pdf]


INVOICES = ResourceSpec(
    RESOURCE,
    InvoiceService,
    InvoiceRead,
    InvoiceCreate,
    InvoiceUpdate,
    extra_handlers=invoice_handlers(),
    description="Invoices: exact money in minor units, gapless numbers at finalize, payments.",
    member=None,
    filters=[
        Filter("status"),
        Filter("customer_email", casefold=True),
        Filter("currency", check=currency_error),
    ],
    sort=["issue_date", "due_date", "total", "number"],
    window=("issue_date", "issue_date"),
    actions=[
        Action("finalize", "finalize", allowed={"draft"}, summary="Finalize a draft: number it and open it"),
        Action(
            "pay",
            "pay",
            allowed={"open", "uncollectible"},
            body=Payment,
            summary="Record a payment (the whole amount due without `amount`)",
        ),
        Action("void", "void", allowed={"open", "uncollectible"}, summary="Void an open invoice"),
        Action(
            "mark-uncollectible",
            "mark_uncollectible",
            allowed={"open"},
            summary="Mark an open invoice uncollectible",
        ),
    ],
)
