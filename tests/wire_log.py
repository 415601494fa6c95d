"""Every statement text the tests' clients send to PostgreSQL, as the server receives it.

A proxy between the clients and the test server logs each query message: a simple
``Query`` (which may carry several statements) and each extended-protocol ``Parse``.
It reads the wire rather than a driver hook because the app talks to PostgreSQL on
three paths (SQLAlchemy sessions, Core connections for operators, raw psycopg cursors
for the hot reads) and the rules below are about what reaches the server, whichever
path sent it.

The proxy runs in a process of its own (``python -m tests.wire_log``), so it does not
compete with the in-process app for the GIL. It writes a message's line, flushed,
before forwarding the message: once the server has answered, the line is in the log.

The rules (``rule_breaks``) are the two a Citus cluster with schema-based sharding
imposes (issue 16, ../shared/DESIGN.md):

- no statement both calls ``set_config`` and names a tenant table: Citus routes such a
  statement whole to the worker holding the schema, so the coordinator's binding (the
  search path and the timeouts) never changes;
- no message holds more than one statement: Citus relays DDL text to its workers over
  the extended protocol, which refuses several commands in one message.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Request codes of the startup packets a client may send before the real startup.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102

# Parts of SQL text inside which a semicolon or a name means nothing.
_INERT = re.compile(
    r"'(?:[^']|'')*'"  # string literal
    r"|\"(?:[^\"]|\"\")*\""  # quoted identifier (kept apart below: it may name a table)
    r"|\$(\w*)\$.*?\$\1\$"  # dollar-quoted body
    r"|--[^\n]*"
    r"|/\*.*?\*/",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "Q" (simple query) or "P" (parse)
    sql: str


def read_log(path: Path, offset: int = 0) -> tuple[list[Message], int]:
    """The messages logged from ``offset`` on, and the offset after them."""
    with path.open("rb") as log:
        log.seek(offset)
        data = log.read()
    complete = data[: data.rfind(b"\n") + 1]
    messages = [Message(**json.loads(line)) for line in complete.splitlines()]
    return messages, offset + len(complete)


def _code_and_names(sql: str) -> tuple[str, set[str]]:
    """``sql`` without literals and comments, and the quoted identifiers it holds."""
    quoted: set[str] = set()

    def blank(match: re.Match[str]) -> str:
        text = match.group(0)
        if text.startswith('"'):
            quoted.add(text[1:-1].replace('""', '"'))
            return " _quoted_ "
        return " "

    return _INERT.sub(blank, sql), quoted


def statement_count(sql: str) -> int:
    """How many statements ``sql`` holds (empty ones between semicolons not counted)."""
    code, _ = _code_and_names(sql)
    return sum(1 for part in code.split(";") if part.strip())


def names_table(sql: str, tables: Iterable[str]) -> set[str]:
    """Which of ``tables`` the statement names, bare or quoted."""
    code, quoted = _code_and_names(sql)
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", code.lower()))
    return {t for t in tables if t in words or t in quoted}


def rule_breaks(messages: Iterable[Message], tenant_tables: Iterable[str]) -> list[str]:
    tables = frozenset(tenant_tables)
    breaks = []
    for message in messages:
        if statement_count(message.sql) > 1:
            breaks.append(f"several statements in one message: {message.sql[:300]!r}")
        code, _ = _code_and_names(message.sql)
        if "set_config" in code.lower() and (named := names_table(message.sql, tables)):
            breaks.append(f"set_config with tenant tables {sorted(named)}: {message.sql[:300]!r}")
    return breaks


# The proxy.


def _query_text(kind: bytes, body: bytes) -> str | None:
    if kind == b"Q":
        return body[: body.index(b"\0")].decode()
    if kind == b"P":
        name_end = body.index(b"\0")
        return body[name_end + 1 : body.index(b"\0", name_end + 1)].decode()
    return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _client_to_server(
    client: asyncio.StreamReader,
    client_out: asyncio.StreamWriter,
    upstream: tuple[str, int] | str,
    log: LogFile,
) -> None:
    # Startup: refuse encryption (the proxy must read the messages), forward the rest.
    while True:
        length = struct.unpack("!I", await client.readexactly(4))[0]
        body = await client.readexactly(length - 4)
        code = struct.unpack("!I", body[:4])[0] if len(body) >= 4 else 0
        if code in (_SSL_REQUEST, _GSSENC_REQUEST):
            client_out.write(b"N")
            await client_out.drain()
            continue
        break
    if isinstance(upstream, str):
        server_in, server_out = await asyncio.open_unix_connection(upstream)
    else:
        server_in, server_out = await asyncio.open_connection(*upstream)
    server_out.write(struct.pack("!I", length) + body)
    back = asyncio.ensure_future(_pipe(server_in, client_out))
    try:
        if code == _CANCEL_REQUEST:
            return
        while True:
            header = await client.readexactly(5)
            kind, length = header[:1], struct.unpack("!I", header[1:])[0]
            body = await client.readexactly(length - 4)
            text = _query_text(kind, body)
            if text is not None:
                log.write(kind.decode(), text)
            server_out.write(header + body)
            await server_out.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        server_out.close()
        await back


class LogFile:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def write(self, kind: str, sql: str) -> None:
        self._file.write(json.dumps({"kind": kind, "sql": sql}) + "\n")
        self._file.flush()


async def serve(listen_port: int, upstream: tuple[str, int] | str, log_path: Path) -> None:
    log = LogFile(log_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _client_to_server(reader, writer, upstream, log)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port, target, path = sys.argv[1:4]
    host, _, upstream_port = target.rpartition(":")
    # A path is a Unix socket (the embedded server); otherwise host:port.
    upstream_address: tuple[str, int] | str = target if target.startswith("/") else (host, int(upstream_port))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(port), upstream_address, Path(path)))
