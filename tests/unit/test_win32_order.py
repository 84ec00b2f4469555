"""Issue 9 item 24: win32 keeps the Win32 C order, win32net mirrors pywin32 (level first)."""

from __future__ import annotations

import inspect

import pytest

from smbsessions import win32, win32net
from smbsessions.auth import Credentials

CREDS = Credentials(username="alice", password="pw")


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: win32.NetSessionEnum(10, "fileserver", None, None, credentials=CREDS), "NetSessionEnum"),  # type: ignore[arg-type]
        (lambda: win32.NetSessionEnum(None, None, None, "10", credentials=CREDS), "NetSessionEnum"),  # type: ignore[arg-type]
        (lambda: win32.NetSessionGetInfo(1, "fileserver", "ws", "bob", credentials=CREDS), "NetSessionGetInfo"),  # type: ignore[arg-type]
        (lambda: win32.NetSessionDel(b"srv", None, "bob", credentials=CREDS), "NetSessionDel"),  # type: ignore[arg-type]
    ],
)
def test_win32_called_pywin32_style_names_the_c_order(call: object, name: str) -> None:
    with pytest.raises(TypeError, match=rf"Win32 C argument order, {name}\(servername, UncClientName, username"):
        call()  # type: ignore[operator]


@pytest.mark.parametrize(
    "call",
    [
        lambda: win32net.NetSessionEnum("fileserver", None, None, 10, credentials=CREDS),  # type: ignore[arg-type]
        lambda: win32net.NetSessionGetInfo("fileserver", "ws", "bob", 1, credentials=CREDS),  # type: ignore[arg-type]
    ],
)
def test_win32net_called_win32_style_points_back(call: object) -> None:
    with pytest.raises(TypeError, match="takes the level first, as pywin32 does"):
        call()  # type: ignore[operator]


def test_win32net_rejects_an_invalid_level_like_pywin32() -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        win32net.NetSessionEnum(3, "fileserver", credentials=CREDS)


def test_win32net_signatures_are_pywin32s() -> None:
    assert list(inspect.signature(win32net.NetSessionEnum).parameters)[:4] == ["level", "server", "client", "username"]
    assert list(inspect.signature(win32net.NetSessionGetInfo).parameters)[:4] == [
        "level", "server", "client", "username"]
    assert list(inspect.signature(win32net.NetSessionDel).parameters)[:3] == ["server", "client", "username"]
