"""The reason-phrase extension of hypercorn's HTTP/1.1 protocol (issue 7, item 13)."""

from __future__ import annotations

from importlib.metadata import version

import hypercorn.protocol

from gateway import _http1


def test_pinned_to_the_installed_hypercorn() -> None:
    # The extension overrides a private method of this version: re-check it before upgrading.
    assert version("hypercorn") == _http1.HYPERCORN_VERSION
    _http1.install()
    assert hypercorn.protocol.H11Protocol is _http1.ReasonPhraseH11Protocol

