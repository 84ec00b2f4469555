"""srvsvc_rules: levels, access (smbtorture rpc.srvsvc's tables), paging, time of day, identity."""

from __future__ import annotations

import datetime as dt

import pytest

from smbsessions.messages import (
    ServerGetInfoRequest,
    ShareCheckRequest,
    ShareEnumRequest,
    ShareGetInfoRequest,
)
from smbsessions.rules import ANONYMOUS, Caller
from smbsessions.srvsvc_levels import IPC_SHARE, ServerIdentity, ShareType, decoy_share
from smbsessions.srvsvc_rules import (
    enumerate_shares,
    server_get_info,
    share_check,
    share_entry_size,
    share_get_info,
    time_of_day,
)

ADMIN = Caller(authenticated=True, admin=True)
USER = Caller(authenticated=True)
IDENTITY = ServerIdentity(name="lowercase-name", decoy_shares=tuple(
    decoy_share(f"share{i}:remark {i}") for i in range(20)))
SHARES = IDENTITY.shares()

# smbtorture rpc.srvsvc: (level, anonymous status, admin status).
ENUM_ALL = [(0, 0, 0), (1, 0, 0), (2, 5, 0), (501, 5, 0), (502, 5, 0)]
ENUM_STICKY = [(0, 0, 0), (1, 0, 0), (2, 5, 0), (501, 124, 124), (502, 5, 0)]
GET_INFO = [(0, 0, 0), (1, 0, 0), (2, 5, 0), (501, 0, 0), (502, 5, 0), (1005, 0, 0)]


@pytest.mark.parametrize(("sticky", "table"), [(False, ENUM_ALL), (True, ENUM_STICKY)])
def test_share_enum_access_matches_smbtorture(sticky: bool, table: list[tuple[int, int, int]]) -> None:
    for level, anonymous, admin in table:
        for caller, expected in ((ANONYMOUS, anonymous), (USER, anonymous), (ADMIN, admin)):
            response = enumerate_shares(SHARES, ShareEnumRequest(level), caller, sticky)
            assert (response.level, response.status) == (level, expected), (level, caller)
            assert (response.entries == [s.project(level) for s in SHARES]) == (expected == 0)


def test_share_get_info_access_matches_smbtorture() -> None:
    admin_share = ServerIdentity(decoy_shares=(decoy_share("ADMIN$"),)).shares()
    for level, anonymous, admin in GET_INFO:
        for caller, expected in ((ANONYMOUS, anonymous), (ADMIN, admin)):
            response = share_get_info(admin_share, ShareGetInfoRequest("ADMIN$", level), caller)
            assert (response.level, response.status) == (level, expected)
            assert (response.info is not None) == (expected == 0)
    assert share_get_info(SHARES, ShareGetInfoRequest("IPC$", 1501), ADMIN).status == 124
    assert share_get_info(SHARES, ShareGetInfoRequest("ipc$", 1004), USER).info == IPC_SHARE.project(1004)


def test_paging_returns_every_share_once_and_progresses() -> None:
    seen = []
    handle = 0
    for _ in range(50):
        response = enumerate_shares(SHARES, ShareEnumRequest(1, prefmaxlen=100, resume_handle=handle), USER)
        assert response.entries
        seen += response.entries
        if response.status == 0:
            assert response.resume_handle == 0
            break
        assert response.status == 234 and response.resume_handle is not None
        assert response.resume_handle > handle
        handle = response.resume_handle
    assert seen == [s.project(1) for s in SHARES]
    assert enumerate_shares(SHARES, ShareEnumRequest(0, resume_handle=999), USER).entries == []
    # The first entry always goes, however small the limit.
    assert len(enumerate_shares(SHARES, ShareEnumRequest(2, prefmaxlen=1), ADMIN).entries or []) == 1


def test_entry_size_counts_fixed_members_and_strings() -> None:
    share = decoy_share("ab:c")
    assert share_entry_size(0, share) == 4 + 6
    assert share_entry_size(1, share) == 4 + 6 + 4 + 4 + 4
    assert share_entry_size(502, share._replace(security_descriptor=b"12345")) == share_entry_size(2, share) + 8 + 5


def test_server_info_levels_and_names_as_configured() -> None:
    info = server_get_info(IDENTITY, ServerGetInfoRequest(101), ANONYMOUS).info
    assert info is not None and info.name == "lowercase-name" and info.platform_id == 500
    assert info.type == 0x9003 and (info.version_major, info.version_minor) == (10, 0)
    assert info.users is None  # level 101 carries no 102 members
    assert server_get_info(IDENTITY, ServerGetInfoRequest(102), USER).status == 5
    assert server_get_info(IDENTITY, ServerGetInfoRequest(102), ADMIN).info == IDENTITY.server_info()
    for level in (502, 503, 402, 7):
        response = server_get_info(IDENTITY, ServerGetInfoRequest(level), ADMIN)
        assert (response.level, response.info, response.status) == (level, None, 124)


def test_share_check_finds_paths_case_insensitively() -> None:
    shares = ServerIdentity(decoy_shares=(decoy_share("ADMIN$"), decoy_share("C$"))).shares()
    assert share_check(shares, ShareCheckRequest("C:\\WINDOWS")).type == ShareType.STYPE_SPECIAL
    assert share_check(shares, ShareCheckRequest("c:\\")).status == 0
    assert share_check(shares, ShareCheckRequest("D:\\")).status == 2311
    assert share_check(shares, ShareCheckRequest("")).type == 0x80000003  # IPC$


def test_decoy_share_types_and_bad_names() -> None:
    assert decoy_share("C$").type == 0x80000000 and decoy_share("C$").path == "C:\\"
    assert decoy_share("Public").type == 0 and decoy_share("Public").netname == "Public"
    for bad in ("", "a/b", "a\\b", "x" * 81, "tab\there"):
        with pytest.raises(ValueError):
            decoy_share(bad)


def test_time_of_day_fields() -> None:
    now = dt.datetime(2024, 2, 29, 23, 30, 5, 250000, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    tod = time_of_day(now, 12.5)
    # 23:30 at UTC-5 is 04:30 UTC on Friday 1 March.
    assert (tod.year, tod.month, tod.day, tod.hours, tod.mins, tod.secs, tod.hunds) == (2024, 3, 1, 4, 30, 5, 25)
    assert tod.weekday == 5 and tod.timezone == 300 and tod.msecs == 12500 and tod.tinterval == 310
    assert tod.elapsed == int(now.timestamp())
    with pytest.raises(ValueError):
        time_of_day(dt.datetime(2024, 1, 1), 0)
