"""The seam to smbprotocol's internals (smbsessions._smbprotocol_compat) still fits.

An smbprotocol upgrade that renames or drops a private name we rely on fails here,
not in the field.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from typing import Any

from smbsessions import _smbprotocol_compat as compat

_INSTANCES: dict[str, Callable[[Any], Any]] = {
    "smbprotocol.transport.Tcp": lambda cls: cls("127.0.0.1", 1),
    "smbprotocol.connection.Connection": lambda cls: cls(uuid.uuid4(), "127.0.0.1", 1),
    "smbprotocol.session.Session": lambda cls: cls(
        importlib.import_module("smbprotocol.connection").Connection(uuid.uuid4(), "127.0.0.1", 1),
        "user", "password",
    ),
    "smbprotocol.connection.Request": lambda cls: cls({}, None, None),
}


def test_the_smbprotocol_private_names_we_use_still_exist() -> None:
    for path, name in compat.SMBPROTOCOL_PRIVATE_NAMES:
        module, _, cls_name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), cls_name)
        assert hasattr(cls, name) or hasattr(_INSTANCES[path](cls), name), f"{path}.{name} is gone"


def test_the_header_lists_every_private_name() -> None:
    doc = compat.__doc__ or ""
    for path, name in compat.SMBPROTOCOL_PRIVATE_NAMES:
        assert f"``{path}.{name}``" in doc, f"{path}.{name} is not in the module's header"


def test_only_the_compat_module_reaches_into_smbprotocol() -> None:
    """No other module of the package names one of smbprotocol's private attributes."""
    from pathlib import Path

    import smbsessions

    root = Path(smbsessions.__file__).parent
    private = {name for _, name in compat.SMBPROTOCOL_PRIVATE_NAMES if name.startswith("_")}
    offenders = [
        f"{path.name}: {name}"
        for path in sorted(root.rglob("*.py"))
        if path.name != "_smbprotocol_compat.py" and "smbprotocol" in (text := path.read_text())
        for name in private
        if f".{name}" in text
    ]
    assert offenders == []


def test_transport_refuses_an_oversized_claim_through_the_bounded_tcp() -> None:
    from smbsessions import transport

    connection = compat.DeadlineConnection(uuid.uuid4(), "127.0.0.1", 1)
    connection.max_message_bytes = transport.MAX_MESSAGE_BYTES
    connection.transport = compat.Tcp("127.0.0.1", 1)
    assert isinstance(connection.transport, compat.BoundedTcp)
    assert connection.transport.max_message_bytes == transport.MAX_MESSAGE_BYTES
    assert connection.violation is None and not connection.smb1_answer
