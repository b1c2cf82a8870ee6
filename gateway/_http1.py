"""HTTP/1.1 status lines with their reason phrase: ``HTTP/1.1 409 Conflict``, not ``HTTP/1.1 409 ``.

hypercorn 0.18's h11 protocol builds every ``h11.Response`` without a reason, so h11 writes an
empty one. Clients print it: the official Python client's ``ApiException`` shows
``Error from server ()`` instead of ``(Conflict)``. hypercorn has no setting for it, so
:func:`install` makes its protocol wrapper build :class:`ReasonPhraseH11Protocol`, which fills in
the standard phrase (``http.HTTPStatus``) of any response sent without one. It overrides a private
method of a pinned hypercorn (``HYPERCORN_VERSION``): a test asserts the version, so an upgrade is
checked again rather than silently losing the phrases. HTTP/2 has no reason phrases.
"""

from __future__ import annotations

from http import HTTPStatus

import h11
import hypercorn.protocol
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


def install() -> None:
    """Serve HTTP/1.1 through :class:`ReasonPhraseH11Protocol` from now on (idempotent)."""
    hypercorn.protocol.H11Protocol = ReasonPhraseH11Protocol  # type: ignore[misc]
