"""Documents: versioned markdown with attachments, and comments on them."""

from atrium.platform.areas import Area
from atrium.tenants.documents import demo
from atrium.tenants.documents.routes import DOCUMENT_COMMENTS, DOCUMENTS_SPEC

AREA = Area("documents", resources=[DOCUMENTS_SPEC, DOCUMENT_COMMENTS], demo=demo.seed)
