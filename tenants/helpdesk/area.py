"""Help desk: tickets, their status workflow and replies."""

from atrium.platform.areas import Area
from atrium.tenants.helpdesk import demo
from atrium.tenants.helpdesk.routes import HELP_DESK

AREA = Area("helpdesk", resources=[HELP_DESK], demo=demo.seed)
