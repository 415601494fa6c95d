"""/projects and /project-discussions: the shared CRUD conventions, specialised."""

from atrium.platform.web.listing import Filter
from atrium.platform.web.resources import ResourceSpec
from atrium.tenants.discussions import replies_oldest_first
from atrium.tenants.projects import schemas as s
from atrium.tenants.projects.services import ProjectDiscussionService, ProjectService

PROJECTS = ResourceSpec(
    "projects",
    ProjectService,
    s.ProjectRead,
    s.ProjectCreate,
    s.ProjectUpdate,
    filters=[Filter("status"), Filter("member_id", column="member_ids", element=True), Filter("owner_id")],
    sort=["name", "updated_at"],
    description=(
        "Projects: seen by their members and by `projects:manage`; names unique in any case. "
        "An archived project and everything in it are read-only (409) until it is made active again."
    ),
)

PROJECT_DISCUSSIONS = ResourceSpec(
    "project-discussions",
    ProjectDiscussionService,
    s.ProjectDiscussionRead,
    s.ProjectDiscussionCreate,
    s.ProjectDiscussionUpdate,
    filters=[Filter("project_id"), Filter("parent_id", null=True), Filter("owner_id")],
    sort=["updated_at", "last_reply_at"],
    default_order=replies_oldest_first,
    description=(
        "A project's message board: top-level discussions (with a title) and their replies "
        "(without). Seen by those who see the project; `parent_id=null` lists the top level, "
        "a thread's replies come oldest first."
    ),
    member="write",
)
