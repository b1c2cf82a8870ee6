"""The hypercorn protocol fixes are pinned to the version they override (issue 7, items 13-14)."""

from __future__ import annotations

from importlib.metadata import version

import hypercorn.protocol

from gateway import _hypercorn_ext as ext


def test_pinned_to_the_installed_hypercorn() -> None:
    # The fixes override private methods of this version: re-check them before upgrading.
    assert version("hypercorn") == ext.HYPERCORN_VERSION
    ext.install()
    assert hypercorn.protocol.H11Protocol is ext.ReasonPhraseH11Protocol
    assert hypercorn.protocol.H2Protocol is ext.EarlyResponseH2Protocol
