"""An append's ack: both forms of JetStream's "wrong last sequence" are a lost compare-and-swap
(the clustered leader's constant form, 10164, crashed a gateway racing another to create
kube-root-ca.crt in dev-cluster), never a generic error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bus import BusError, JetStreamError, WrongLastSequence
from bus._bridge import Reply
from bus._log import Log


def _error(code: int, description: str) -> Reply:
    return Reply(json.dumps({"error": {"code": 400, "err_code": code, "description": description}}).encode(), {})


def test_wrong_last_sequence_names_the_current_sequence() -> None:
    with pytest.raises(WrongLastSequence) as e:
        Log._ack(_error(10071, "wrong last sequence: 42"), 7)
    assert (e.value.expected, e.value.current) == (7, 42)


def test_the_clustered_constant_form_is_a_lost_compare_and_swap_too() -> None:
    with pytest.raises(WrongLastSequence) as e:
        Log._ack(_error(10164, "wrong last sequence"), 0)
    assert (e.value.expected, e.value.current) == (0, -1)  # the append looks the sequence up


def _old_ack(reply: Reply, expected_seq: int | None) -> tuple[int, bool]:
    """The ack parse before the PubAck struct (json to a dict), kept here as the reference."""
    resp = json.loads(reply.data) if reply.data else {}
    if "error" in resp:
        err = resp["error"]
        if err.get("err_code") in (10071, 10164):
            desc = str(err.get("description", ""))
            current = int(desc.rsplit(" ", 1)[-1]) if desc.rsplit(" ", 1)[-1].isdigit() else -1
            raise WrongLastSequence(expected_seq or 0, current)
        raise JetStreamError(int(err.get("code", 0)), int(err.get("err_code", 0)), str(err.get("description", "")))
    if "seq" not in resp:
        raise BusError(f"unexpected append reply: {reply.data[:200]!r}")
    return int(resp["seq"]), bool(resp.get("duplicate"))


ACKS = [
    b'{"stream":"JK","seq":1}',
    b'{"stream":"JK","seq":18446744073709551615,"duplicate":true}',
    b'{"stream":"JK","domain":"hub","seq":42,"duplicate":false,"val":"x","batch":"b","count":3}',
    b'{"seq":7,"stream":"JK","duplicate":null}',
    b'{"seq":7.0,"stream":"JK"}',
    b'{"stream":"JK"}',
    b'[1, 2]',
    b'{}',
    b'',
    b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"seq":3}',
    b'{"error":{"code":400,"err_code":10164,"description":"wrong last sequence"}}',
    b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}',
    b'{"error":{"code":400,"description":"no err_code"}}',
    b'{"seq":3,"error":{"code":500,"err_code":10999,"description":"error wins over seq"}}',
]


@pytest.mark.parametrize("data", ACKS)
@pytest.mark.parametrize("expected", [None, 0, 9])
def test_ack_parse_as_before(data: bytes, expected: int | None) -> None:
    def outcome(parse: Any) -> Any:
        try:
            return parse(Reply(data, None), expected)
        except BusError as e:
            return type(e), str(e), getattr(e, "current", None)

    assert outcome(Log._ack) == outcome(_old_ack)
