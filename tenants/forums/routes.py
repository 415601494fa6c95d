"""/forums and /forum-discussions: the shared CRUD conventions, specialised."""

from typing import Any

from sqlalchemy import func

from atrium.platform.web.listing import Filter, ListRequest
from atrium.platform.web.resources import ResourceSpec
from atrium.tenants.discussions import replies_oldest_first
from atrium.tenants.forums import schemas as s
from atrium.tenants.forums.services import ForumDiscussionService, ForumService


def pinned_then_latest_activity(request: ListRequest, columns: Any) -> list[Any]:
    """Topics pinned first, then by latest activity (models.ACTIVITY_SQL, which the topics'
    index holds); a thread's replies oldest first."""
    if request.filtered("parent_id") and not request.has_null("parent_id"):
        return replies_oldest_first(request, columns)
    return [
        columns.pinned.desc(),
        func.coalesce(columns.last_reply_at, columns.created_at).desc(),
        columns.id.desc(),
    ]


FORUMS = ResourceSpec(
    "forums",
    ForumService,
    s.ForumRead,
    s.ForumCreate,
    s.ForumUpdate,
    filters=[Filter("owner_id")],
    sort=["name", "updated_at"],
    description="Forums: the tenant's discussion boards; names unique in any case.",
)

FORUM_DISCUSSIONS = ResourceSpec(
    "forum-discussions",
    ForumDiscussionService,
    s.ForumDiscussionRead,
    s.ForumDiscussionCreate,
    s.ForumDiscussionUpdate,
    filters=[Filter("forum_id"), Filter("parent_id", null=True), Filter("owner_id")],
    sort=["updated_at", "last_reply_at"],
    default_order=pinned_then_latest_activity,
    description=(
        "A forum's topics (with a title) and their replies (without). Topics list pinned "
        "first, then by latest activity; a thread's replies oldest first. Pinning and "
        "locking need `forum-discussions:manage`; a locked topic takes no replies (409)."
    ),
    member="write",
)
