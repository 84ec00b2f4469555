"""MS-SRVS 3.1.4.5 / 3.1.4.6 rules, one row per spec sentence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smbsessions.levels import LEVELS, MAX_PREFERRED_LENGTH, SessionInfo
from smbsessions.messages import DelRequest, EnumRequest
from smbsessions.rules import (
    ANONYMOUS,
    Caller,
    SessionInfoPolicy,
    canonical_client_name,
    entry_size,
    enumerate_sessions,
    select_sessions_to_delete,
    session_matches,
)
from smbsessions.status import NetApiStatus as S

ADMIN = Caller(authenticated=True, admin=True)
USER = Caller(authenticated=True, admin=False)


def session(i: int, user: str = "alice", client: str | None = None) -> SessionInfo:
    return SessionInfo(
        client or f"\\\\127.0.0.{i + 2}", user, i % 3, 100 + i, i, 0, "SMB 2.1", "TCP 127.0.0.1:445"
    )


SESSIONS = [
    session(0, "alice"),
    session(1, "bob"),
    session(2, "alice"),
    session(3, "carol", client="\\\\[::1]"),
    session(4, "Bob"),
]


def enum(request: EnumRequest, caller: Caller = ADMIN, policy: SessionInfoPolicy = SessionInfoPolicy.ADMINS,
         sessions: list[SessionInfo] = SESSIONS):  # type: ignore[no-untyped-def]
    return enumerate_sessions(sessions, request, caller, policy)


@pytest.mark.parametrize(
    ("spec", "request_", "status"),
    [
        ("ClientName ... MUST start with \\\\; otherwise ... NERR_InvalidComputer",
         EnumRequest(502, client_name="127.0.0.2"), S.NERR_InvalidComputer),
        ("ClientName ... more than 1,024 characters, including the terminating null ...",
         EnumRequest(502, client_name="\\\\" + "x" * 1022), S.ERROR_INVALID_PARAMETER),
        ("UserName ... greater than 1,024 characters ... ERROR_INVALID_PARAMETER",
         EnumRequest(502, user_name="u" * 1024), S.ERROR_INVALID_PARAMETER),
        ("Level ... not equal to one of the valid values ... ERROR_INVALID_LEVEL",
         EnumRequest(3), S.ERROR_INVALID_LEVEL),
        ("Level 999 likewise", EnumRequest(999), S.ERROR_INVALID_LEVEL),
        ("no entries match the qualifiers ... NERR_UserNotFound",
         EnumRequest(10, user_name="nobody"), S.NERR_UserNotFound),
        ("no entries match the qualifiers ... NERR_ClientNameNotFound",
         EnumRequest(10, client_name="\\\\10.9.9.9"), S.NERR_ClientNameNotFound),
        ("client matches but the user does not: NERR_UserNotFound",
         EnumRequest(10, client_name="\\\\127.0.0.2", user_name="bob"), S.NERR_UserNotFound),
    ],
)
def test_enum_errors(spec: str, request_: EnumRequest, status: int) -> None:
    result = enum(request_)
    assert result.status == status, spec
    assert result.entries == []
    assert result.total_entries == 0


def test_name_of_exactly_1024_characters_with_nul_is_accepted() -> None:
    # 1023 characters + NUL = 1024: not "more than 1,024".
    result = enum(EnumRequest(502, user_name="u" * 1023))
    assert result.status == S.NERR_UserNotFound


def test_empty_qualifiers_mean_not_specified() -> None:
    # "a NULL (zero-length) string" is no qualifier.
    result = enum(EnumRequest(502, client_name="", user_name=""))
    assert result.status == S.NERR_Success
    assert len(result.entries) == len(SESSIONS)


def test_server_name_is_ignored() -> None:
    # "The server MUST ignore this parameter."
    assert enum(EnumRequest(1, server_name="\\\\NOSUCHSERVER")).entries == SESSIONS


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_every_valid_level_returns_everything(level: int) -> None:
    result = enum(EnumRequest(level))
    assert result.status == S.NERR_Success
    assert result.level == level
    assert result.entries == SESSIONS
    assert result.total_entries == len(SESSIONS)
    assert result.resume_handle == 0


def test_qualifiers_all_must_match_case_insensitively() -> None:
    # "The server MUST return only those sessions that match all specified qualifiers."
    result = enum(EnumRequest(10, user_name="BOB"))
    assert [s.username for s in result.entries] == ["bob", "Bob"]
    result = enum(EnumRequest(10, client_name="\\\\127.0.0.3", user_name="bob"))
    assert [s.cname for s in result.entries] == ["\\\\127.0.0.3"]
    assert result.total_entries == 1


def test_ipv6_client_name_matches_with_or_without_brackets() -> None:
    assert enum(EnumRequest(0, client_name="\\\\[::1]")).entries == [SESSIONS[3]]
    assert enum(EnumRequest(0, client_name="\\\\::1")).entries == [SESSIONS[3]]


class TestAccess:
    def test_anonymous_never_enumerates(self) -> None:
        for policy in SessionInfoPolicy:
            for level in (0, 10, 3):
                assert enum(EnumRequest(level), ANONYMOUS, policy).status == S.ERROR_ACCESS_DENIED

    def test_admins_policy_denies_every_level_to_users(self) -> None:
        # Modern Windows' SrvsvcSessionInfo: every level denied to non-admins, before the level check.
        for level in (0, 1, 2, 10, 502, 3):
            assert enum(EnumRequest(level), USER).status == S.ERROR_ACCESS_DENIED

    def test_authenticated_policy_opens_levels_0_and_10_only(self) -> None:
        # Win32 docs: levels 1 and 2 (and 502) need administrators; 0 and 10 nothing special.
        policy = SessionInfoPolicy.AUTHENTICATED
        assert enum(EnumRequest(0), USER, policy).status == S.NERR_Success
        assert enum(EnumRequest(10), USER, policy).status == S.NERR_Success
        for level in (1, 2, 502):
            assert enum(EnumRequest(level), USER, policy).status == S.ERROR_ACCESS_DENIED
        assert enum(EnumRequest(7), USER, policy).status == S.ERROR_INVALID_LEVEL

    def test_denial_comes_before_argument_checks(self) -> None:
        assert enum(EnumRequest(502, client_name="bad"), USER).status == S.ERROR_ACCESS_DENIED


class TestResumeHandle:
    def test_null_or_zero_starts_at_the_beginning(self) -> None:
        assert enum(EnumRequest(0, resume_handle=None)).entries == SESSIONS
        assert enum(EnumRequest(0, resume_handle=None)).resume_handle is None
        assert enum(EnumRequest(0, resume_handle=0)).entries == SESSIONS

    def test_value_below_size_continues_from_that_position(self) -> None:
        result = enum(EnumRequest(0, resume_handle=2))
        assert result.entries == SESSIONS[2:]
        # "entries ... that could have been enumerated from the current resume position"
        assert result.total_entries == 3
        assert result.status == S.NERR_Success

    def test_value_at_or_past_size_gives_success_and_zero_entries(self) -> None:
        for handle in (len(SESSIONS), len(SESSIONS) + 1, 0xFFFFFFFF):
            result = enum(EnumRequest(0, resume_handle=handle, user_name="nosuchuser"))
            assert (result.status, result.entries) == (S.NERR_Success, [])

    def test_qualifiers_apply_after_the_resume_position(self) -> None:
        # The handle indexes the unfiltered list: alice is at 0 and 2.
        result = enum(EnumRequest(10, user_name="alice", resume_handle=1))
        assert result.entries == [SESSIONS[2]]
        assert result.total_entries == 1
        result = enum(EnumRequest(10, user_name="alice", resume_handle=3))
        assert result.status == S.NERR_UserNotFound


class TestPreferedMaximumLength:
    def test_more_data_returns_what_fits_and_the_last_index(self) -> None:
        size = entry_size(502, SESSIONS[0])
        result = enum(EnumRequest(502, prefmaxlen=2 * size + 1))
        assert result.status == S.ERROR_MORE_DATA
        assert result.entries == SESSIONS[:2]
        assert result.total_entries == len(SESSIONS)
        # "set ResumeHandle to the index value of the last enumerated session" (1-based).
        assert result.resume_handle == 2

    def test_at_least_one_entry_per_call(self) -> None:
        for limit in (0, 1, 10):
            result = enum(EnumRequest(502, prefmaxlen=limit))
            assert result.status == S.ERROR_MORE_DATA
            assert result.entries == SESSIONS[:1]

    def test_null_resume_handle_stays_null_on_more_data(self) -> None:
        result = enum(EnumRequest(502, prefmaxlen=1, resume_handle=None))
        assert result.status == S.ERROR_MORE_DATA
        assert result.resume_handle is None

    def test_exact_fit_is_success(self) -> None:
        total = sum(entry_size(10, s) for s in SESSIONS)
        result = enum(EnumRequest(10, prefmaxlen=total))
        assert result.status == S.NERR_Success
        assert len(result.entries) == len(SESSIONS)

    def test_entry_size_counts_structure_and_utf16_strings(self) -> None:
        info = SessionInfo("\\\\h", "\U0001f600", 1, 2, 3, 0, None, "t")
        # level 502: 8 fields * 4 + cname (3+1)*2 + username (2 units + 1)*2 + transport (1+1)*2
        assert entry_size(502, info) == 32 + 8 + 6 + 4
        assert entry_size(0, info) == 4 + 8


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 40),
    limit=st.integers(0, 600),
    level=st.sampled_from(sorted(LEVELS)),
    user=st.sampled_from([None, "alice", "bob"]),
)
def test_paging_yields_every_entry_exactly_once(count: int, limit: int, level: int, user: str | None) -> None:
    sessions = [session(i, ["alice", "bob", "carol"][i % 3]) for i in range(count)]
    expected = [s for s in sessions if user is None or s.username == user]
    seen: list[SessionInfo] = []
    handle = 0
    for _ in range(count + 2):
        result = enumerate_sessions(sessions, EnumRequest(level, user_name=user, prefmaxlen=limit,
                                                          resume_handle=handle), ADMIN)
        if result.status == S.NERR_UserNotFound:
            break
        assert result.status in (S.NERR_Success, S.ERROR_MORE_DATA)
        assert result.entries or not expected, "every call makes progress"
        seen.extend(result.entries)
        if result.status == S.NERR_Success:
            break
        handle = result.resume_handle or 0
    assert seen == expected


def test_max_preferred_length_returns_everything() -> None:
    many = [session(i) for i in range(300)]
    result = enum(EnumRequest(502, prefmaxlen=MAX_PREFERRED_LENGTH), sessions=many)
    assert result.status == S.NERR_Success
    assert len(result.entries) == 300


def test_unknown_level_response_has_no_arm() -> None:
    response = enum(EnumRequest(3)).to_response()
    assert response.entries is None
    assert response.status == S.ERROR_INVALID_LEVEL


class TestDelete:
    @pytest.mark.parametrize(
        ("spec", "request_", "caller", "status"),
        [
            ("access checked (admins)", DelRequest(client_name="\\\\127.0.0.2"), USER, S.ERROR_ACCESS_DENIED),
            ("anonymous", DelRequest(client_name="\\\\127.0.0.2"), ANONYMOUS, S.ERROR_ACCESS_DENIED),
            ("both qualifiers missing MUST fail", DelRequest(), ADMIN, S.ERROR_INVALID_PARAMETER),
            ("both qualifiers empty likewise", DelRequest(client_name="", user_name=""), ADMIN,
             S.ERROR_INVALID_PARAMETER),
            ("ClientName without \\\\: NERR_ClientNameNotFound", DelRequest(client_name="127.0.0.2"), ADMIN,
             S.NERR_ClientNameNotFound),
            ("over 1024 characters (client)", DelRequest(client_name="\\\\" + "x" * 1022), ADMIN,
             S.ERROR_INVALID_PARAMETER),
            ("over 1024 characters (user)", DelRequest(user_name="x" * 1024), ADMIN,
             S.ERROR_INVALID_PARAMETER),
            ("none matches: NERR_ClientNameNotFound", DelRequest(user_name="nobody"), ADMIN,
             S.NERR_ClientNameNotFound),
        ],
    )
    def test_errors(self, spec: str, request_: DelRequest, caller: Caller, status: int) -> None:
        result = select_sessions_to_delete(SESSIONS, request_, caller)
        assert (result.status, result.indices) == (status, []), spec

    def test_user_only_closes_every_session_of_that_user(self) -> None:
        result = select_sessions_to_delete(SESSIONS, DelRequest(user_name="bob"), ADMIN)
        assert (result.status, result.indices) == (S.NERR_Success, [1, 4])

    def test_client_only_closes_every_session_from_that_client(self) -> None:
        result = select_sessions_to_delete(SESSIONS, DelRequest(client_name="\\\\[::1]"), ADMIN)
        assert result.indices == [3]

    def test_both_must_match(self) -> None:
        result = select_sessions_to_delete(
            SESSIONS, DelRequest(client_name="\\\\127.0.0.4", user_name="alice"), ADMIN
        )
        assert result.indices == [2]
        result = select_sessions_to_delete(
            SESSIONS, DelRequest(client_name="\\\\127.0.0.4", user_name="bob"), ADMIN
        )
        assert result.status == S.NERR_ClientNameNotFound


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("127.0.0.2", "\\\\127.0.0.2"),
        ("\\\\127.0.0.2", "\\\\127.0.0.2"),
        ("::1", "\\\\[::1]"),
        ("0:0::1", "\\\\[::1]"),
        ("\\\\[::ffff:127.0.0.5]", "\\\\127.0.0.5"),
        ("ws-one", "\\\\ws-one"),
    ],
)
def test_client_names_compare_in_canonical_form(given: str, canonical: str) -> None:
    assert canonical_client_name(given) == canonical
    assert session_matches(SessionInfo(canonical.upper(), "alice", 0, 0, 0, 0), given, None)
