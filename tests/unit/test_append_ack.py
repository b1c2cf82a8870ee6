"""An append's ack: both forms of JetStream's "wrong last sequence" are a lost compare-and-swap
(the clustered leader's constant form, 10164, crashed a gateway racing another to create
kube-root-ca.crt in dev-cluster), never a generic error."""

from __future__ import annotations

import json

import pytest

from bus import WrongLastSequence
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
