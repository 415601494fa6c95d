"""Media: uploaded files."""

from atrium.platform.areas import Area
from atrium.tenants.media import demo
from atrium.tenants.media.routes import MEDIA

AREA = Area("media", resources=[MEDIA], demo=demo.seed)
