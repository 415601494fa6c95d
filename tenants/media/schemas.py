"""Bodies of /media, and the rules that turn a client's file name and type into safe values."""

from __future__ import annotations

import datetime
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

import msgspec
from litestar.datastructures import UploadFile

from atrium.platform.web.bodies import Schema

MAX_NAME_LENGTH = 255  # Media.name and Media.type are VARCHAR(255)
DEFAULT_NAME = "upload"
DEFAULT_TYPE = "application/octet-stream"


class MediaRead(msgspec.Struct):
    """Metadata only: the bytes are served by ``GET /media/{id}/content``."""

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    type: str
    size: int
    created_at: datetime.datetime
    updated_at: datetime.datetime


class MediaUpdate(Schema):
    """The name and the owner can change; new bytes are a new upload."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    # Handing a file to another user needs media:manage (API.md §5).
    owner_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET


@dataclass
class MediaUpload:
    """The ``multipart/form-data`` body of ``POST /media``."""

    file: UploadFile


# Characters never kept in a name: controls, bidi and zero-width formatting (which can
# disguise an extension), surrogates (not encodable), line and paragraph separators.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_MAX_KEPT_EXTENSION = 16


def clean_filename(raw: str | None) -> str:
    """The last path component of ``raw``, without control characters, at most 255 characters.

    Falls back to ``"upload"`` when nothing usable is left.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES).strip()
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) < _MAX_KEPT_EXTENSION:
            name = stem[: MAX_NAME_LENGTH - len(extension) - 1].rstrip() + "." + extension
        else:
            name = name[:MAX_NAME_LENGTH].rstrip()
    if name in {"", ".", ".."}:
        return DEFAULT_NAME
    return name


# RFC 9110 §5.6.2 token and §8.3.1 media type; parameters are kept only as token=token.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"({_TCHARS})/({_TCHARS})")
_PARAMETER = re.compile(rf"({_TCHARS})=({_TCHARS})")


def clean_media_type(raw: str | None) -> str:
    """``raw`` if it is a syntactically valid media type (lower-cased), else ``application/octet-stream``.

    Parameters written as ``name=value`` tokens are kept (``charset=utf-8``); anything
    else after the first ``;`` (quoted strings, stray characters) is dropped.
    """
    if not raw:
        return DEFAULT_TYPE
    essence, *parameters = raw.split(";")
    matched = _MEDIA_TYPE.fullmatch(essence.strip())
    if matched is None:
        return DEFAULT_TYPE
    value = f"{matched.group(1)}/{matched.group(2)}".lower()
    if len(value) > MAX_NAME_LENGTH:
        return DEFAULT_TYPE
    for parameter in parameters:
        kept = _PARAMETER.fullmatch(parameter.strip())
        if kept is None:
            continue
        addition = f"; {kept.group(1).lower()}={kept.group(2)}"
        if len(value) + len(addition) > MAX_NAME_LENGTH:
            break
        value += addition
    return value


_UNSAFE_IN_QUOTED = re.compile(r'[^\x20-\x7e]|["\\%]')


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII ``filename`` fallback and the exact name in ``filename*`` (RFC 6266)."""
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    fallback = _UNSAFE_IN_QUOTED.sub("_", decomposed) or DEFAULT_NAME
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
