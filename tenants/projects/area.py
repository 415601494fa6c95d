"""Projects: members, archiving, and each project's message board."""

from atrium.platform.areas import Area
from atrium.tenants.projects import demo
from atrium.tenants.projects.routes import PROJECT_DISCUSSIONS, PROJECTS

AREA = Area("projects", resources=[PROJECTS, PROJECT_DISCUSSIONS], demo=demo.seed)
