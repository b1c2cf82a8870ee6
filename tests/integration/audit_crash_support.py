"""``python -m tests.integration.audit_crash_support serve ...``: ``jetkube`` whose appends to a subject
containing ``crashme`` never return after JetStream acknowledged them, so the test can kill -9 the
process between the append and the answer (a test-side hook: nothing in the server knows of it)."""

from __future__ import annotations

import sys
from typing import Any

import trio

from bus import _log
from gateway._cli import main

_append = _log.Log.append


async def _append_then_hang(self: _log.Log, subject: str, payload: bytes, **kw: Any) -> int:
    seq = await _append(self, subject, payload, **kw)
    if "crashme" in subject:
        await trio.sleep_forever()  # appended and acknowledged; the answer never goes out
    return seq


_log.Log.append = _append_then_hang  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
