"""The five SESSION_INFO levels: one declaration, projection, pywin32 dict form."""

from __future__ import annotations

import pytest

from smbsessions import levels
from smbsessions.levels import FIELDS, LEVELS, SessionInfo, UserFlags

FULL = SessionInfo("\\\\10.0.0.5", "bob", 2, 300, 12, 1, "Windows 10", "\\Device\\NetbiosSmb")


def test_levels_follow_ms_srvs_field_lists() -> None:
    names = {level: [f.name for f in fields] for level, fields in LEVELS.items()}
    assert names == {
        0: ["cname"],
        1: ["cname", "username", "num_opens", "time", "idle_time", "user_flags"],
        2: ["cname", "username", "num_opens", "time", "idle_time", "user_flags", "cltype_name"],
        10: ["cname", "username", "time", "idle_time"],
        502: ["cname", "username", "num_opens", "time", "idle_time", "user_flags", "cltype_name",
              "transport"],
    }
    assert list(SessionInfo._fields) == [f.name for f in FIELDS]
    assert levels.VALID_LEVELS == (0, 1, 2, 10, 502)
    assert sorted(levels.FALLBACK_ORDER) == sorted(levels.VALID_LEVELS)


def test_every_level_keeps_502_order() -> None:
    for fields in LEVELS.values():
        positions = [FIELDS.index(f) for f in fields]
        assert positions == sorted(positions)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_projection(level: int) -> None:
    projected = FULL.project(level)
    kept = {f.name for f in LEVELS[level]}
    for name in SessionInfo._fields:
        assert getattr(projected, name) == (getattr(FULL, name) if name in kept else None)
    assert projected.project(level) == projected
    assert isinstance(projected, SessionInfo)


def test_projection_of_unknown_level_raises() -> None:
    with pytest.raises(KeyError):
        FULL.project(3)


def test_level_10_projection_exactly() -> None:
    assert FULL.project(10) == SessionInfo("\\\\10.0.0.5", "bob", None, 300, 12, None, None, None)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_to_win32_keys_and_round_trip(level: int) -> None:
    record = FULL.to_win32(level)
    assert list(record) == levels.columns(level)
    assert SessionInfo.from_win32(record) == FULL.project(level)


def test_to_win32_uses_pywin32_names() -> None:
    assert FULL.to_win32() == {
        "client_name": "\\\\10.0.0.5",
        "user_name": "bob",
        "num_opens": 2,
        "active_time": 300,
        "idle_time": 12,
        "user_flags": 1,
        "client_type": "Windows 10",
        "transport": "\\Device\\NetbiosSmb",
    }


def test_from_win32_ignores_unknown_and_none() -> None:
    info = SessionInfo.from_win32({"client_name": "c", "user_name": None, "extra": object()})
    assert info == SessionInfo(cname="c")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"client_name": 5}, "'client_name' must be a string, not int"),
        ({"user_name": b"bob"}, "'user_name' must be a string, not bytes"),
        ({"num_opens": "3"}, "'num_opens' must be an integer, not str"),
        ({"active_time": True}, "'active_time' must be an integer, not bool"),
        ({"idle_time": 1.5}, "'idle_time' must be an integer, not float"),
        ({"user_flags": -1}, "'user_flags' must be between 0 and 4294967295, not -1"),
        ({"num_opens": 1 << 32}, "'num_opens' must be between 0 and 4294967295, not 4294967296"),
    ],
)
def test_from_win32_validation(record: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as error:
        SessionInfo.from_win32(record)
    assert str(error.value) == message


def test_from_win32_accepts_boundaries() -> None:
    info = SessionInfo.from_win32({"num_opens": 0, "active_time": 0xFFFFFFFF, "client_type": ""})
    assert (info.num_opens, info.time, info.cltype_name) == (0, 0xFFFFFFFF, "")


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (0, []),
        (1, ["SESS_GUEST"]),
        (2, ["SESS_NOENCRYPTION"]),
        (3, ["SESS_GUEST", "SESS_NOENCRYPTION"]),
        (0x10, ["0x10"]),
        (0xFFFFFFFF, ["SESS_GUEST", "SESS_NOENCRYPTION", "0xFFFFFFFC"]),
    ],
)
def test_user_flag_names(flags: int, names: list[str]) -> None:
    assert levels.user_flag_names(flags) == names


def test_user_flag_values() -> None:
    assert (UserFlags.SESS_GUEST, UserFlags.SESS_NOENCRYPTION) == (1, 2)
    assert levels.MAX_PREFERRED_LENGTH == 0xFFFFFFFF


def test_check_level() -> None:
    for level in LEVELS:
        levels.check_level(level)
    with pytest.raises(ValueError, match="level must be one of 0, 1, 2, 10, 502, not 3"):
        levels.check_level(3)


def test_columns() -> None:
    assert levels.columns(10) == ["client_name", "user_name", "active_time", "idle_time"]
    assert levels.columns(0) == ["client_name"]


def test_field_metadata_is_complete() -> None:
    for field in FIELDS:
        assert field.kind in ("str", "u32")
        assert field.title and field.doc and field.win32_key
    assert len({f.win32_key for f in FIELDS}) == len(FIELDS)
