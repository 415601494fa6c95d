"""Customization: the tenant's own settings documents."""

from atrium.platform.areas import Area
from atrium.tenants.customize import demo
from atrium.tenants.customize.routes import CUSTOMIZE

AREA = Area("customize", resources=[CUSTOMIZE], demo=demo.seed)
