"""uvicorn's httptools protocol with the limits it lacks: header size and slow clients.

uvicorn bounds only an idle keep-alive connection (``timeout_keep_alive``); its
``h11_max_incomplete_event_size`` does not apply to the httptools parser it prefers.
So a client could send a header of any size, or hold a connection (and a worker's
attention) forever by sending a request one byte a second. This subclass enforces:

- the request line and headers together are at most ``MAX_HEADER_BYTES`` (else 431);
- they arrive within ``HEADER_TIMEOUT`` seconds of the connection or of the previous
  response (else the connection is closed);
- a body arrives at ``MIN_BODY_RATE`` bytes a second on average once ``BODY_GRACE``
  seconds have passed (else the connection is closed). Time while the server itself
  has paused reading (the app is not consuming the body) does not count.

A reverse proxy in front usually enforces the same; these keep a bare ``atrium serve``
safe too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT = 10.0
BODY_GRACE = 5.0
MIN_BODY_RATE = 16 * 1024
CHECK_EVERY = 0.5

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
_TOO_LARGE_BODY = (
    b'{"type":"request-header-fields-too-large","title":"Request Header Fields Too Large",'
    b'"status":431,"detail":"The request line and headers may not exceed %d bytes."}' % MAX_HEADER_BYTES
)


class _HeadersTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = time.monotonic()  # for the next request's headers
        self._header_bytes = 0
        self._body_started: float | None = None
        self._body_bytes = 0
        self._paused_seconds = 0.0
        self._paused_at: float | None = None
        self._headers_too_large = False
        self._watch: asyncio.TimerHandle | None = self.loop.call_later(CHECK_EVERY, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # The transport now belongs to the websocket protocol, which has its own limits
        # (frame size, pings): left running, the watch saw an HTTP connection that sent no
        # next request and closed the socket about HEADER_TIMEOUT seconds after it opened.
        self._stop_watching()
        super().handle_websocket_upgrade()

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # --- counting --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._body_started = None

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large = True
            raise _HeadersTooLarge

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._body_started = time.monotonic()
        self._body_bytes = 0
        self._paused_seconds = 0.0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._body_started = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._waiting_since = time.monotonic()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        # The parser reports our own stop (headers too large) as a parse error.
        if self._headers_too_large:
            self.transport.write(_TOO_LARGE % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY))
            self.transport.close()
            return
        super().send_400_response(msg)

    # --- the watch ------------------------------------------------------------------

    def _check(self) -> None:
        self._watch = None
        if self.transport.is_closing():
            return
        now = time.monotonic()
        if self._too_slow(now):
            self.transport.close()
            return
        self._watch = self.loop.call_later(CHECK_EVERY, self._check)

    def _too_slow(self, now: float) -> bool:
        cycle: Any = self.cycle
        busy = cycle is not None and not cycle.response_complete
        if self._body_started is None:
            # Waiting for a request's headers: not while the app is still answering.
            return not busy and now - self._waiting_since > HEADER_TIMEOUT and self._before_keep_alive()
        if self.flow.read_paused:
            self._paused_at = self._paused_at or now
            return False
        if self._paused_at is not None:
            self._paused_seconds += now - self._paused_at
            self._paused_at = None
        elapsed = now - self._body_started - self._paused_seconds
        return elapsed > BODY_GRACE and self._body_bytes < MIN_BODY_RATE * (elapsed - BODY_GRACE)

    def _before_keep_alive(self) -> bool:
        # An idle connection after a response is uvicorn's keep-alive timeout's to end.
        return self.timeout_keep_alive_task is None or self._header_bytes > 0
