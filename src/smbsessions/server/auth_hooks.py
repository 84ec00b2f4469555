"""Session setup and logoff hooks: where SMB sessions begin and end.

impacket authenticates; these wrappers tell the engine when a session starts
(so it enters the live session table) or ends, and close three gaps in
impacket's handlers:

* after a failed or unfinished SESSION_SETUP impacket still marks the
  connection authenticated, so further commands would be served; we undo it;
* SMB1 SESSION_SETUP without extended security ("basic" security) is granted
  to anyone without checking a password; we refuse it;
* the engine may veto a logon impacket accepted (null sessions when anonymous
  logons are disabled);
* impacket keeps a connection's trees and opens across LOGOFF and a new
  SESSION_SETUP (one session per connection); the engine is told before
  each SESSION_SETUP so it can end the old session's state, as Windows does;
* the engine may refuse a tree connect impacket would grant (null sessions
  reach only IPC$ when accounts are configured).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from impacket import smb
from impacket import smb3structs as smb2

STATUS_SUCCESS = 0x00000000
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_LOGON_FAILURE = 0xC000006D

SMB2_DIALECT_NAME = "SMB 2.0.2"  # the only SMB2 dialect impacket's server negotiates
SMB1_DIALECT_NAME = "NT LM 0.12"

# (connection id, dialect name, impacket's status) -> status to send.
SetupListener = Callable[[str, str, int], int]
LogoffListener = Callable[[str], None]
# (connection id) -> None; called before impacket handles a SESSION_SETUP.
SetupStartListener = Callable[[str], None]
# (connection id, share name as impacket stored it) -> may this session keep the tree?
TreeGuard = Callable[[str, str], bool]


class SessionHooks:
    """Wraps impacket's SESSION_SETUP and LOGOFF handlers (SMB2 and SMB1)."""

    def __init__(
        self,
        server: Any,
        on_setup: SetupListener,
        on_logoff: LogoffListener,
        on_setup_start: SetupStartListener,
        may_connect: TreeGuard,
    ) -> None:
        self._on_setup = on_setup
        self._on_logoff = on_logoff
        self._on_setup_start = on_setup_start
        self._may_connect = may_connect
        self._smb2_setup = server.hookSmb2Command(smb2.SMB2_SESSION_SETUP, self._smb2_session_setup)
        self._smb2_logoff = server.hookSmb2Command(smb2.SMB2_LOGOFF, self._smb2_session_logoff)
        self._smb1_setup = server.hookSmbCommand(
            smb.SMB.SMB_COM_SESSION_SETUP_ANDX, self._smb1_session_setup
        )
        self._smb1_logoff = server.hookSmbCommand(
            smb.SMB.SMB_COM_LOGOFF_ANDX, self._smb1_session_logoff
        )
        self._smb2_tree = server.hookSmb2Command(smb2.SMB2_TREE_CONNECT, self._smb2_tree_connect)
        self._smb1_tree = server.hookSmbCommand(
            smb.SMB.SMB_COM_TREE_CONNECT_ANDX, self._smb1_tree_connect
        )

    def _smb2_session_setup(self, conn_id: str, server: Any, packet: Any) -> Any:
        self._on_setup_start(conn_id)
        commands, packets, status = self._smb2_setup(conn_id, server, packet)
        status = self._on_setup(conn_id, SMB2_DIALECT_NAME, status)
        return commands, packets, _settle(server, conn_id, status)

    def _smb1_session_setup(self, conn_id: str, server: Any, command: Any, packet: Any) -> Any:
        self._on_setup_start(conn_id)
        if command["WordCount"] != 12:
            response = smb.SMBCommand(smb.SMB.SMB_COM_SESSION_SETUP_ANDX)
            response["Parameters"] = b""
            response["Data"] = b""
            return [response], None, _settle(server, conn_id, STATUS_LOGON_FAILURE)
        commands, packets, status = self._smb1_setup(conn_id, server, command, packet)
        status = self._on_setup(conn_id, SMB1_DIALECT_NAME, status)
        return commands, packets, _settle(server, conn_id, status)

    def _smb2_session_logoff(self, conn_id: str, server: Any, packet: Any) -> Any:
        result = self._smb2_logoff(conn_id, server, packet)
        self._on_logoff(conn_id)
        return result

    def _smb1_session_logoff(self, conn_id: str, server: Any, command: Any, packet: Any) -> Any:
        result = self._smb1_logoff(conn_id, server, command, packet)
        self._on_logoff(conn_id)
        return result


    def _smb2_tree_connect(self, conn_id: str, server: Any, packet: Any) -> Any:
        before = set(server.getConnectionData(conn_id)["ConnectedShares"])
        result = self._smb2_tree(conn_id, server, packet)
        if self._refused_trees(conn_id, server, before):
            return [smb2.SMB2Error()], None, STATUS_ACCESS_DENIED
        return result

    def _smb1_tree_connect(self, conn_id: str, server: Any, command: Any, packet: Any) -> Any:
        before = set(server.getConnectionData(conn_id)["ConnectedShares"])
        result = self._smb1_tree(conn_id, server, command, packet)
        if self._refused_trees(conn_id, server, before):
            response = smb.SMBCommand(smb.SMB.SMB_COM_TREE_CONNECT_ANDX)
            response["Parameters"] = b""
            response["Data"] = b""
            return [response], None, STATUS_ACCESS_DENIED
        return result

    def _refused_trees(self, conn_id: str, server: Any, before: set[int]) -> bool:
        # Let impacket resolve the path (UNC or bare name) and judge the share it picked.
        shares = server.getConnectionData(conn_id)["ConnectedShares"]
        refused = False
        for tree_id in set(shares) - before:
            if not self._may_connect(conn_id, str(shares[tree_id].get("shareName", ""))):
                del shares[tree_id]
                refused = True
        return refused


def _settle(server: Any, conn_id: str, status: int) -> int:
    if status != STATUS_SUCCESS:
        # impacket sets this even when the logon failed or is still in progress.
        server.getConnectionData(conn_id, False)["Authenticated"] = False
    return status
