"""Errors of the bus: what can go wrong between us and JetStream."""

from __future__ import annotations


class BusError(Exception):
    """Base of every bus error."""


class BusClosed(BusError):
    """The connection was closed by us."""


class BusRefused(BusError):
    """NATS refused the connection: wrong credentials, or a server certificate that is not trusted."""


class BusUnavailable(BusError):
    """Not connected to NATS when the request began: nothing was sent."""


class BusTimeout(BusError):
    """No reply within the deadline. The request may still have been applied."""


class BusDisconnected(BusTimeout):
    """The connection dropped while the request was in flight: it may still have been applied."""


class NoResponders(BusError):
    """Nothing answered the subject (e.g. no stream leader during an election)."""


class WrongLastSequence(BusError):
    """A compare-and-swap append lost: the subject's last sequence is ``current``."""

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(f"wrong last sequence: expected {expected}, subject is at {current}")
        self.expected = expected
        self.current = current


class MsgIdCollision(BusError):
    """JetStream dropped an append as a duplicate of an earlier message with the same Msg-Id on
    another subject (or one no longer in the stream): the append was *not* applied. A bug in
    whoever chose the Msg-Id; never a success."""

    def __init__(self, msg_id: str, subject: str, first_seq: int) -> None:
        super().__init__(f"Msg-Id {msg_id!r} of an append to {subject} was already used by sequence "
                         f"{first_seq}")
        self.msg_id = msg_id
        self.subject = subject
        self.first_seq = first_seq


class StreamMismatch(BusError):
    """The stream exists with a setting that differs from the one asked for (e.g. its replicas):
    changing a stream is an operator's decision, never made silently at start."""


class JetStreamError(BusError):
    """JetStream answered an API request with an error."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"jetstream error {code}/{err_code}: {description}")
        self.code = code
        self.err_code = err_code
        self.description = description
