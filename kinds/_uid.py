"""Random (version 4) UUIDs for objects' ``metadata.uid`` and requests' audit IDs, as
``str(uuid.uuid4())`` gives them, from a buffer of random bytes read 256 UUIDs at a time.

``uuid.uuid4()`` reads 16 bytes with ``os.urandom`` per call: a system call that also lets go of
the GIL, which the gateway's NATS thread then takes — on a busy gateway the trio thread waits for it
to come back (py-spy put ``uuid4`` at ~4 % of a create's samples, two per create). The bytes come
from the same source (``os.urandom``); a child process (fork) starts with a fresh buffer, so no two
processes hand out the same bytes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_PER_READ = 256
_lock = threading.Lock()
_state: list[Any] = [b"", 0]  # the random bytes read, and the offset of the next unused 16


def _forget() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork
    _state[0], _state[1] = b"", 0


os.register_at_fork(after_in_child=_forget)


def new_uid() -> str:
    """A random version 4 UUID in its canonical text form (``str(uuid.uuid4())``)."""
    with _lock:
        buf, pos = _state
        if pos >= len(buf):
            buf, pos = _state[0], _state[1] = os.urandom(16 * _PER_READ), 0
        _state[1] = pos + 16
    b = bytearray(buf[pos:pos + 16])
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
