"""server/limits.py: the deadlines and admission decisions of the server shell, with plain values."""

from __future__ import annotations

from dataclasses import dataclass

from smbsessions.server.limits import Timeouts, evictions


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
