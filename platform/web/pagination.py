"""Page parameters of list routes (API.md §5): ``limit`` and ``offset``."""

from dataclasses import dataclass
from typing import Annotated

from litestar.di import Provide
from litestar.params import QueryParameter

MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    offset: int


# Not ``from __future__ import annotations``: Litestar reads these annotation objects.
def provide_page_params(
    limit: Annotated[int, QueryParameter(ge=1, le=200, description="Items per page, 1-200.")] = 50,
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


PAGE_DEPENDENCY = {"page": Provide(provide_page_params, sync_to_thread=False)}
