"""The client's enumeration policy with plain values: a ``fetch_page`` that returns EnumResponses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from smbsessions.enumeration import plan_enumeration, refusal
from smbsessions.levels import SessionInfo
from smbsessions.messages import EnumResponse
from smbsessions.status import NetApiError, NetApiStatus, ProtocolError

MORE = NetApiStatus.ERROR_MORE_DATA
DENIED = NetApiStatus.ERROR_ACCESS_DENIED
INVALID = NetApiStatus.ERROR_INVALID_LEVEL

ROWS = [SessionInfo(f"\\\\127.0.0.{i + 2}", "bob" if i % 2 == 0 else "alice", i, 10 * i, i, 0)
        for i in range(7)]


class Server:
    """A ``fetch_page`` over a table of rows: pages of ``page_size``, levels refused as told."""

    def __init__(self, rows: list[SessionInfo], page_size: int = 1000,
                 refuse: dict[int, int] | None = None) -> None:
        self.rows = rows
        self.page_size = page_size
        self.refuse = refuse or {}
        self.calls: list[tuple[int, int]] = []

    def __call__(self, level: int, resume: int) -> EnumResponse:
        self.calls.append((level, resume))
        if level in self.refuse:
            return EnumResponse(level, None, 0, None, self.refuse[level])
        page = self.rows[resume:resume + self.page_size]
        end = resume + len(page)
        more = end < len(self.rows)
        return EnumResponse(level, [info.project(level) for info in page], len(self.rows),
                            end if more else 0, MORE if more else 0)


def scripted(answer: Callable[[int, int], EnumResponse]) -> tuple[list[tuple[int, int]],
                                                                Callable[[int, int], EnumResponse]]:
    calls: list[tuple[int, int]] = []

    def fetch(level: int, resume: int) -> EnumResponse:
        calls.append((level, resume))
        return answer(level, resume)
    return calls, fetch


def entries(pages: Iterator[list[SessionInfo]]) -> list[SessionInfo]:
    """Every entry of every page (later pages are fetched as this runs)."""
    return [info for page in pages for info in page]


# ---------------------------------------------------------------- fallback order


def test_the_richest_allowed_level_answers_and_the_attempts_are_kept() -> None:
    server = Server(ROWS, refuse={502: DENIED})
    plan = plan_enumeration(server, None)
    assert plan.level == 10
    assert plan.attempts == [(502, DENIED)]
    assert len(entries(plan.pages)) == len(ROWS)
    assert server.calls == [(502, 0), (10, 0)]


def test_an_explicit_level_is_not_changed() -> None:
    with pytest.raises(NetApiError) as info:
        plan_enumeration(Server(ROWS, refuse={1: DENIED}), 1)
    assert info.value.status == DENIED


def test_denied_everywhere_lists_every_attempt() -> None:
    with pytest.raises(NetApiError) as info:
        plan_enumeration(Server(ROWS, refuse=dict.fromkeys((502, 10, 2, 1, 0), DENIED)), None)
    assert info.value.status == DENIED
    assert [level for level, _ in info.value.attempts] == [502, 10, 2, 1, 0]


def test_invalid_everywhere_is_invalid_level() -> None:
    with pytest.raises(NetApiError) as info:
        plan_enumeration(Server(ROWS, refuse=dict.fromkeys((502, 10, 2, 1, 0), INVALID)), None)
    assert info.value.status == INVALID


def test_another_refusal_stops_the_fallback() -> None:
    server = Server(ROWS, refuse={502: NetApiStatus.ERROR_NOT_ENOUGH_MEMORY})
    with pytest.raises(NetApiError) as info:
        plan_enumeration(server, None)
    assert info.value.status == NetApiStatus.ERROR_NOT_ENOUGH_MEMORY
    assert server.calls == [(502, 0)]


def test_an_unknown_level_is_refused_before_any_call() -> None:
    server = Server(ROWS)
    with pytest.raises(ValueError):
        plan_enumeration(server, 3)
    assert server.calls == []


# ---------------------------------------------------------------- paging guards


def test_pages_follow_the_resume_handle() -> None:
    server = Server(ROWS, page_size=3)
    plan = plan_enumeration(server, 1)
    assert entries(plan.pages) == [info.project(1) for info in ROWS]
    assert server.calls == [(1, 0), (1, 3), (1, 6)]
    assert plan.total_entries_hint == len(ROWS)


def test_later_pages_are_fetched_only_as_the_pages_are_taken() -> None:
    server = Server(ROWS, page_size=3)
    plan = plan_enumeration(server, 1)
    assert server.calls == [(1, 0)]
    next(plan.pages)
    assert server.calls == [(1, 0)]
    next(plan.pages)
    assert server.calls == [(1, 0), (1, 3)]


def test_a_resume_handle_that_never_advances_is_a_protocol_error() -> None:
    calls, fetch = scripted(lambda level, resume: EnumResponse(level, [ROWS[0]], 10, 1, MORE))
    plan = plan_enumeration(fetch, 0)
    with pytest.raises(ProtocolError, match="does not advance"):
        entries(plan.pages)
    assert len(calls) == 2


def test_a_missing_resume_handle_with_more_data_is_a_protocol_error() -> None:
    _, fetch = scripted(lambda level, resume: EnumResponse(level, [ROWS[0]], 10, None, MORE))
    with pytest.raises(ProtocolError, match="does not advance"):
        entries(plan_enumeration(fetch, 0).pages)


def test_an_empty_more_data_page_is_a_protocol_error() -> None:
    _, fetch = scripted(lambda level, resume: EnumResponse(level, [], 10, resume + 1, MORE))
    with pytest.raises(ProtocolError):
        entries(plan_enumeration(fetch, 0).pages)


def test_a_page_without_a_container_is_a_protocol_error() -> None:
    _, fetch = scripted(lambda level, resume: EnumResponse(level, None, 0, 0, 0))
    with pytest.raises(ProtocolError, match="container"):
        entries(plan_enumeration(fetch, 0).pages)


def test_a_later_page_failing_raises_instead_of_truncating() -> None:
    def answer(level: int, resume: int) -> EnumResponse:
        if resume:
            return EnumResponse(level, [], 0, 0, NetApiStatus.ERROR_NOT_ENOUGH_MEMORY)
        return EnumResponse(level, [ROWS[0]], 2, 1, MORE)

    _, fetch = scripted(answer)
    with pytest.raises(NetApiError) as info:
        entries(plan_enumeration(fetch, 0).pages)
    assert info.value.status == NetApiStatus.ERROR_NOT_ENOUGH_MEMORY


def endless(page_size: int) -> tuple[list[tuple[int, int]], Callable[[int, int], EnumResponse]]:
    page = [SessionInfo(f"10.0.{i // 250}.{i % 250}", f"user{i}", 1, 5, 0, 0) for i in range(page_size)]
    return scripted(lambda level, resume: EnumResponse(level, page, 10**9, resume + page_size, MORE))


def test_an_entry_budget_bounds_the_pages_together() -> None:
    calls, fetch = endless(2000)
    with pytest.raises(ProtocolError, match="more than 9,000 sessions"):
        entries(plan_enumeration(fetch, 1, max_entries=9000).pages)
    assert len(calls) == 5


def test_a_page_budget_ends_an_endless_server() -> None:
    _, fetch = endless(1)
    taken = []
    with pytest.raises(ProtocolError, match="more than 50 pages"):
        for page in plan_enumeration(fetch, 1, max_entries=10**9, max_pages=50).pages:
            taken.append(page)
    assert len(taken) == 50


# ---------------------------------------------------------------- qualifiers, which "not found"


def ignoring(level: int, resume: int) -> EnumResponse:
    # Samba's behaviour: qualifiers ignored, everything returned; levels 0 and 1 only.
    if level not in (0, 1):
        return EnumResponse(level, None, 0, None, INVALID)
    return EnumResponse(level, [info.project(level) for info in ROWS[:5]], 5, 0, 0)


def test_qualifiers_are_applied_locally_when_the_server_ignores_them() -> None:
    plan = plan_enumeration(ignoring, None, user="bob")
    assert plan.level == 1
    assert plan.filtered_locally and plan.collected
    assert {info.username for info in entries(plan.pages)} == {"bob"}


def test_a_client_the_server_sent_nothing_from_is_client_name_not_found() -> None:
    with pytest.raises(NetApiError) as info:
        plan_enumeration(ignoring, None, client="10.1.1.1")
    assert info.value.status == NetApiStatus.NERR_ClientNameNotFound
    assert info.value.attempts[-1] == (1, NetApiStatus.NERR_ClientNameNotFound)


def test_a_client_without_the_user_is_user_not_found() -> None:
    with pytest.raises(NetApiError) as info:
        plan_enumeration(ignoring, None, client="127.0.0.2", user="alice")
    assert info.value.status == NetApiStatus.NERR_UserNotFound


def test_qualifiers_the_server_applied_are_not_reported_as_local() -> None:
    _, fetch = scripted(lambda level, resume: EnumResponse(level, [ROWS[0]], 1, 0, 0))
    plan = plan_enumeration(fetch, 1, user="bob")
    assert not plan.filtered_locally
    assert entries(plan.pages) == [ROWS[0]]


def test_level_0_user_matching_asks_a_level_that_names_users() -> None:
    # Level 0 has no user name; level 1 tells that bob is on .2, .4 and .6.
    calls, fetch = scripted(ignoring)
    plan = plan_enumeration(fetch, 0, user="bob")
    assert [info.cname for info in entries(plan.pages)] == ["\\\\127.0.0.2", "\\\\127.0.0.4", "\\\\127.0.0.6"]
    assert [level for level, _ in calls] == [0, 502, 10, 2, 1]


def test_level_0_user_matching_trusts_the_server_when_no_level_names_users() -> None:
    def only_level0(level: int, resume: int) -> EnumResponse:
        if level:
            return EnumResponse(level, None, 0, None, DENIED)
        return EnumResponse(0, [ROWS[0].project(0)], 1, 0, 0)

    plan = plan_enumeration(only_level0, 0, user="bob")
    assert entries(plan.pages) == [ROWS[0].project(0)]


def test_level_0_user_matching_says_not_found_when_the_user_has_no_session() -> None:
    with pytest.raises(NetApiError) as info:
        plan_enumeration(ignoring, 0, user="nobody")
    assert info.value.status == NetApiStatus.NERR_UserNotFound


def test_a_refusal_names_every_level_tried() -> None:
    error = refusal(DENIED, [(502, DENIED), (10, DENIED)], "(note)")
    assert error.attempts == [(502, DENIED), (10, DENIED)]
    assert "level 502: ERROR_ACCESS_DENIED" in str(error) and "(note)" in str(error)
    assert "level" not in str(refusal(DENIED, [(1, DENIED)]))
