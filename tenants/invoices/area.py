"""Invoices: exact money, a status machine, gapless numbers and PDFs."""

from atrium.platform.areas import Area
from atrium.tenants.invoices import demo
from atrium.tenants.invoices.routes import INVOICES

AREA = Area("invoices", resources=[INVOICES], demo=demo.seed)
