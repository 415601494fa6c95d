"""Identity: users, their groups and roles, the links between them, and logging in."""

from atrium.platform.areas import Area
from atrium.tenants.identity import demo
from atrium.tenants.identity.auth_routes import auth_router
from atrium.tenants.identity.routes import SPECS

AREA = Area("identity", resources=SPECS, routers=lambda _settings: [auth_router], demo=demo.seed)
