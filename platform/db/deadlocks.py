"""Running an operator transaction again when PostgreSQL chose it as a deadlock victim.

Operator DDL (``DROP SCHEMA ... CASCADE``, a migration's ``ALTER TABLE``) takes an
``ACCESS EXCLUSIVE`` lock table by table, while the requests still in flight on that
tenant take their locks in their own order: an ``INSERT`` holds its table and then
locks the parent row its foreign key points to. When the two orders cross, PostgreSQL
aborts one side. A request answers 503 and its client retries; the operator's side is
a whole transaction that rolled back cleanly, so it is run again here instead of
failing a command over a few milliseconds of bad luck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg.errors
from sqlalchemy.exc import OperationalError

T = TypeVar("T")

ATTEMPTS = 5
PAUSE_SECONDS = 0.2


def is_deadlock(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and isinstance(exc.orig, psycopg.errors.DeadlockDetected)


def retry_deadlocked(transaction: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run ``transaction`` (which opens, and commits or rolls back, its own) up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except OperationalError as exc:
            if attempt == attempts or not is_deadlock(exc):
                raise
        # The requests it crossed finish meanwhile; a growing pause lets them.
        time.sleep(PAUSE_SECONDS * attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
