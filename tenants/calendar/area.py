"""Calendar: events with time zones and recurrence, and their iCalendar feeds."""

from atrium.platform.areas import Area
from atrium.tenants.calendar import demo
from atrium.tenants.calendar.routes import EVENTS_SPEC, calendar_routers

AREA = Area("calendar", resources=[EVENTS_SPEC], routers=calendar_routers, demo=demo.seed)
