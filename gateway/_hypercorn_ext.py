"""Two fixes to hypercorn's protocols, for the hypercorn version pinned here (``HYPERCORN_VERSION``).

- HTTP/1.1 status lines with their reason phrase (``HTTP/1.1 409 Conflict``): hypercorn builds
  every ``h11.Response`` without one, so h11 writes ``HTTP/1.1 409 ``, and clients print it (the
  official Python client's ``ApiException`` says ``Error from server ()``, not ``(Conflict)``).
  :class:`ReasonPhraseH11Protocol` fills in the standard phrase (``http.HTTPStatus``).
- HTTP/2 request data after the response: the gateway answers some requests before reading
  their body (401, 403, 413, ...). hypercorn then drops the stream, and a DATA frame for it still
  on the way raises a KeyError that resets the whole connection, every other stream with it.
  :class:`EarlyResponseH2Protocol` acknowledges and drops such data, so the connection's
  flow-control window stays open. (It does not reset the stream with NO_ERROR, which RFC 9113
  section 8.1 allows: httpx/httpcore then fail the request instead of returning its answer.)

hypercorn has no setting for either, so :func:`install` makes its protocol wrapper build these
subclasses, which override private methods: a test asserts the version, so an upgrade is
checked again rather than silently losing the fixes.
"""

from __future__ import annotations

from http import HTTPStatus

import h2.events
import h11
import hypercorn.protocol
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent

HYPERCORN_VERSION = "0.18.0"
_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}


class ReasonPhraseH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, sending the standard reason phrase with every status."""

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
            event = type(event)(headers=event.headers, status_code=event.status_code,
                                http_version=event.http_version, reason=_PHRASES.get(event.status_code, b""))
        await super()._send_h11_event(event)


class EarlyResponseH2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, tolerating request data for a stream it already answered."""

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # Whether a stream is still open depends on the events before it in the batch, so the
        # batch is handed on in runs that end at each DATA event.
        run: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                if run:
                    await super()._handle_events(run)
                    run = []
                if event.stream_id not in self.streams:
                    self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    await self._flush()
                    continue
            run.append(event)
        if run:
            await super()._handle_events(run)


def install() -> None:
    """Serve HTTP/1.1 and HTTP/2 through the classes above from now on (idempotent)."""
    hypercorn.protocol.H11Protocol = ReasonPhraseH11Protocol  # type: ignore[misc]
    hypercorn.protocol.H2Protocol = EarlyResponseH2Protocol  # type: ignore[misc]
