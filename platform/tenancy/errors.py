"""The operator errors of tenant provisioning and administration.

Apart from provisioning.py, which loads every area's tables: the command line catches these
on every command, and most commands (list, show, suspend, domains) need no table at all.
"""

from __future__ import annotations

__all__ = ["InvalidInput", "ProvisioningError"]


class ProvisioningError(Exception):
    """Provisioning was refused or failed; the message is fit for an operator."""


class InvalidInput(ProvisioningError):
    """The request itself is wrong (bad slug, name, email...): exit code 2."""
