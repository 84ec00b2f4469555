"""server/limits.py: the deadlines and admission decisions of the server shell, with plain values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from smbsessions.server.limits import Budget, Timeouts, connection_cap, evictions, take_all
from smbsessions.server.pipe import PipeHandle, PipeOverflowError


@dataclass(frozen=True)
class Conn:
    client_address: str
    opened: float


TIMEOUTS = Timeouts.clamped(idle=900.0, null_idle=60.0, preauth=30.0, frame=60.0)


def test_clamped_keeps_null_idle_and_frame_within_idle() -> None:
    short = Timeouts.clamped(idle=10.0, null_idle=60.0, preauth=30.0, frame=60.0)
    assert (short.idle, short.null_idle, short.preauth, short.frame) == (10.0, 10.0, 30.0, 10.0)


def test_a_fresh_logged_on_connection_has_no_expired_deadline() -> None:
    assert TIMEOUTS.expired(100.0, opened=0.0, last_frame=99.0, frame_started=None,
                            logged_on=True, authenticated=True) is None


def test_an_unfinished_frame_is_checked_first() -> None:
    reason = TIMEOUTS.expired(1000.0, opened=0.0, last_frame=0.0, frame_started=900.0,
                              logged_on=False, authenticated=False)
    assert reason == "frame not completed in time"


def test_no_logon_within_preauth() -> None:
    reason = TIMEOUTS.expired(31.0, opened=0.0, last_frame=30.5, frame_started=None,
                              logged_on=False, authenticated=False)
    assert reason == "no logon within 30 s"


def test_idle_limit_depends_on_authentication() -> None:
    def expired(now: float, authenticated: bool) -> str | None:
        return TIMEOUTS.expired(now, opened=0.0, last_frame=0.0, frame_started=None, logged_on=True,
                                authenticated=authenticated)

    assert expired(61.0, authenticated=False) == "idle"
    assert expired(61.0, authenticated=True) is None
    assert expired(901.0, authenticated=True) == "idle"


def test_room_left_evicts_nothing() -> None:
    waiting = [Conn("10.0.0.1", 1.0), Conn("10.0.0.2", 2.0)]
    assert evictions("10.0.0.3", waiting, max_per_address=2, max_connections=16, reserved=2) == []


def test_per_address_cap_evicts_the_oldest_from_that_address() -> None:
    old, new, other = Conn("10.0.0.1", 1.0), Conn("10.0.0.1", 5.0), Conn("10.0.0.2", 0.5)
    assert evictions("10.0.0.1", [new, other, old], max_per_address=2, max_connections=16, reserved=2) == [
        (old, "unauthenticated connections per address")
    ]


def test_full_unauthenticated_slots_evict_from_the_most_crowded_address() -> None:
    flood = [Conn("10.0.0.9", float(t)) for t in range(1, 7)]
    admin = Conn("10.0.0.1", 0.0)  # the oldest overall, but alone on its address
    victims = evictions("10.0.0.5", [admin, *flood], max_per_address=64, max_connections=8, reserved=1)
    assert victims == [(flood[0], "unauthenticated slots full")]


def test_both_caps_can_evict_one_each() -> None:
    same = [Conn("10.0.0.1", float(t)) for t in range(1, 4)]
    others = [Conn("10.0.0.2", float(t)) for t in range(10, 15)]
    victims = evictions("10.0.0.1", [*same, *others], max_per_address=3, max_connections=8, reserved=1)
    assert victims == [
        (same[0], "unauthenticated connections per address"),
        (others[0], "unauthenticated slots full"),
    ]


def test_no_reserved_slots_means_no_slot_eviction() -> None:
    flood = [Conn("10.0.0.9", float(t)) for t in range(1, 8)]
    assert evictions("10.0.0.5", flood, max_per_address=64, max_connections=8, reserved=0) == []


# --------------------------------------------------------------------------- descriptor limit


def test_connection_cap_fits_under_the_descriptor_limit() -> None:
    assert connection_cap(1024, 256, reserve=32) == 224
    assert connection_cap(1024, 1024, reserve=32) == 992


def test_connection_cap_keeps_a_lower_configured_value() -> None:
    assert connection_cap(100, 1 << 20, reserve=32) == 100


def test_connection_cap_without_a_limit_is_the_configured_value() -> None:
    assert connection_cap(1024, None) == 1024
    assert connection_cap(1024, -1) == 1024  # RLIM_INFINITY


def test_connection_cap_is_at_least_one() -> None:
    assert connection_cap(1024, 10, reserve=32) == 1


# --------------------------------------------------------------------------- budgets


def test_budget_takes_up_to_its_limit_and_gives_back() -> None:
    budget = Budget(10)
    assert budget.take(6)
    assert not budget.take(5)  # 11 > 10: refused, nothing taken
    assert budget.used == 6
    assert budget.take(4)
    assert not budget.take()
    budget.give(7)
    assert budget.used == 3
    budget.give(100)  # never below zero
    assert budget.used == 0


def test_take_all_takes_from_every_budget_or_none() -> None:
    small, large = Budget(5), Budget(100)
    assert not take_all((large, small), 6)
    assert (large.used, small.used) == (0, 0)
    assert take_all((large, small), 5)
    assert (large.used, small.used) == (5, 5)


class Answers:
    """A pipe endpoint that answers every write with ``size``-byte messages, ``count`` of them."""

    def __init__(self, size: int, count: int = 1) -> None:
        self.size, self.count = size, count
        self.queued: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.queued.extend(bytes(self.size) for _ in range(self.count))

    def read(self, max_len: int) -> tuple[bytes, bool]:
        if not self.queued:
            return b"", False
        message = self.queued[0]
        if len(message) <= max_len:
            self.queued.pop(0)
            return message, False
        self.queued[0] = message[max_len:]
        return message[:max_len], True

    def close(self) -> None:
        self.closed = True


def test_queued_output_is_counted_until_read() -> None:
    connection, server = Budget(1000), Budget(10_000)
    pipe = PipeHandle(Answers(300, count=2), budgets=(connection, server))
    pipe.write(b"request")
    assert (connection.used, server.used) == (600, 600)
    assert pipe.read(100) == (bytes(100), True)
    assert (connection.used, server.used) == (500, 500)
    pipe.read(1000)
    pipe.read(1000)
    assert (connection.used, server.used) == (0, 0)
    assert not pipe.pending()


def test_an_answer_over_a_budget_is_refused_and_not_queued() -> None:
    connection, server = Budget(1000), Budget(1500)
    first = PipeHandle(Answers(800), budgets=(connection, server))
    first.write(b"request")
    other_connection = Budget(1000)
    second = PipeHandle(Answers(800), budgets=(other_connection, server))
    with pytest.raises(PipeOverflowError):
        second.write(b"request")  # 1600 > the server's 1500
    assert not second.pending()
    assert (other_connection.used, server.used) == (0, 800)
    third = PipeHandle(Answers(300), budgets=(connection, server))
    with pytest.raises(PipeOverflowError):
        third.transceive(b"request", 100)  # 1100 > the connection's 1000
    assert (connection.used, server.used) == (800, 800)
    first.read(2000)
    assert third.transceive(b"request", 1000) == (bytes(300), False)  # room again; pipe still usable
    assert (connection.used, server.used) == (0, 0)


def test_closing_a_pipe_gives_its_unread_output_back() -> None:
    connection, server = Budget(1000), Budget(1000)
    endpoint = Answers(700)
    pipe = PipeHandle(endpoint, budgets=(connection, server))
    pipe.write(b"request")
    pipe.read(10)
    pipe.close()
    pipe.close()
    assert (connection.used, server.used) == (0, 0)
    assert endpoint.closed
