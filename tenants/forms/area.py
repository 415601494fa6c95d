"""Forms: typed fields, answers checked against them, public forms and a CSV export."""

from atrium.platform.areas import Area
from atrium.tenants.forms import demo
from atrium.tenants.forms.routes import FORM_RESPONSES, FORMS, form_routes

AREA = Area("forms", resources=[FORMS, FORM_RESPONSES], routers=form_routes, demo=demo.seed)
