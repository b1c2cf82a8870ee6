"""kinds._uid.new_uid: the text of uuid.uuid4() from buffered random bytes."""

import os
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from kinds import _uid
from kinds._uid import new_uid


@settings(max_examples=500)
@given(st.binary(min_size=16, max_size=16))
def test_new_uid_is_uuid4_of_the_same_bytes(raw: bytes) -> None:
    saved = list(_uid._state)
    try:
        _uid._state[0], _uid._state[1] = raw, 0
        assert new_uid() == str(uuid.UUID(bytes=raw, version=4))
    finally:
        _uid._state[:] = saved


def test_new_uids_are_distinct_version_4_across_refills() -> None:
    uids = [new_uid() for _ in range(3 * _uid._PER_READ + 7)]
    assert len(set(uids)) == len(uids)
    for u in uids:
        parsed = uuid.UUID(u)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == u


def test_a_forked_child_does_not_repeat_the_parents_uids() -> None:
    new_uid()  # the buffer holds bytes the child must not hand out again
    ahead = list(_uid._state)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(w, new_uid().encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert _uid._state == ahead
    assert child != new_uid()
    assert uuid.UUID(child).version == 4
