"""The bus never takes a Msg-Id reused on another subject for a successful append."""

from __future__ import annotations

import pytest
import trio

from bus import Key, MsgIdCollision, StreamConfig, open_bridge, open_log

pytestmark = pytest.mark.integration


async def test_duplicate_ack_for_another_subject_is_not_success(nats_url: str) -> None:
    with trio.fail_after(20):
        async with open_bridge(nats_url) as bridge:
            log = await open_log(bridge, StreamConfig(name="TD", prefix="td"))
            subjects = [log.subject(Key("default", "", "configmaps", "ns", f"o{i}")) for i in range(4)]
            for i, s in enumerate(subjects):
                assert await log.append(s, b"v0", msg_id=f"init{i}", expected_seq=0) == i + 1
            first = await log.append(subjects[0], b"v1", msg_id="same", expected_seq=1)
            # The same Msg-Id on other subjects, with and without CAS: JetStream answers "duplicate"
            # with the first message's sequence; that must be an error, not the other append's seq.
            for s, expected in ((subjects[1], 2), (subjects[2], None), (subjects[3], 4)):
                with pytest.raises(MsgIdCollision) as e:
                    await log.append(s, b"v1", msg_id="same", expected_seq=expected)
                assert e.value.first_seq == first and e.value.subject == s
            # Nothing was written for them; the true retry of the first append is still idempotent.
            assert await log.head() == first
            assert await log.append(subjects[0], b"v1", msg_id="same", expected_seq=1) == first
            for i, s in enumerate(subjects[1:], start=1):
                last = await log.last_message(s)
                assert last is not None and last[1] == f"init{i}"
