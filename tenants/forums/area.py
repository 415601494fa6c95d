"""Forums: boards of topics and replies, with pinning and locking."""

from atrium.platform.areas import Area
from atrium.tenants.forums import demo
from atrium.tenants.forums.routes import FORUM_DISCUSSIONS, FORUMS

AREA = Area("forums", resources=[FORUMS, FORUM_DISCUSSIONS], demo=demo.seed)
