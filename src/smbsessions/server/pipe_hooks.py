"""Route the SMB commands that touch ``\\PIPE\\srvsvc`` to an in-process pipe.

impacket answers a named pipe by connecting a TCP socket to a DCE/RPC thread
that never learns who the caller is. These hooks, installed with impacket's
own ``hookSmb2Command`` / ``hookSmbCommand`` / ``hookTransaction``, answer the
srvsvc pipe here instead, in the connection thread where the SMB session is
known, and pass every other file and pipe to impacket's original handler.

Covered: SMB2 CREATE, WRITE, READ, IOCTL(FSCTL_PIPE_TRANSCEIVE), CLOSE and
SMB1 NT_CREATE_ANDX, WRITE_ANDX, READ_ANDX, CLOSE, TRANSACTION(TransactNmPipe).
SMB1 core READ/WRITE reach the pipe through impacket's socket path (the pipe
handle is socket-shaped there), as a byte stream without message boundaries.

Every other open on IPC$ is refused (STATUS_OBJECT_NAME_NOT_FOUND, as Samba
answers an unknown pipe): impacket treats IPC$ as a directory, and srvsvc is
the only pipe we serve. The share root itself (an empty name, what a directory
listing opens) still goes to impacket, whose IPC$ is an empty private
directory, so SMB2 listings end in STATUS_NO_SUCH_FILE as SMB1 ones do.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from typing import Any

from impacket import smb
from impacket import smb3structs as smb2
from impacket.smbserver import PIPE_FILE_DESCRIPTOR, decodeSMBString

from smbsessions.server.pipe import PipeBusyError, PipeHandle, PipeOverflowError

LOG = logging.getLogger("smbsessions.server")

STATUS_SUCCESS = 0x00000000
STATUS_BUFFER_OVERFLOW = 0x80000005
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
STATUS_PIPE_BUSY = 0xC00000AE
STATUS_PIPE_EMPTY = 0xC00000D9
STATUS_INTERNAL_ERROR = 0xC00000E5

FILE_ATTRIBUTE_NORMAL = 0x80
FILE_TYPE_MESSAGE_MODE_PIPE = 2
# SMB1 NT_CREATE_ANDX IPCState: message-mode read and type, instance count 0xFF.
IPC_STATE_MESSAGE_PIPE = 0x05FF

# impacket's command handler results: (response commands, whole packets, NTSTATUS).
HandlerResult = tuple[Any, Any, int]
PipeOpener = Callable[[str], "PipeHandle | None"]
PipeReleaser = Callable[[str, PipeHandle], None]


def is_srvsvc(name: str) -> bool:
    """The file name a client uses to open the srvsvc pipe on IPC$."""
    name = name.replace("/", "\\").strip("\\").lower()
    return name in ("srvsvc", "pipe\\srvsvc")


def _is_share_root(name: str) -> bool:
    return not name.replace("/", "\\").strip("\\")


def _is_ipc(conn_data: dict[str, Any], tree_id: int) -> bool:
    share = conn_data["ConnectedShares"].get(tree_id)
    return share is not None and str(share.get("shareName", "")).upper() == "IPC$"


def _pipe_entry(pipe: PipeHandle, name: str) -> dict[str, Any]:
    # Shaped like impacket's own open-file records so its other handlers
    # (flush, query info, the SMB1 core read/write socket path) cope with it.
    return {
        "FileHandle": PIPE_FILE_DESCRIPTOR,
        "FileName": name,
        "DeleteOnClose": False,
        "Open": {"EnumerationLocation": 0, "EnumerationSearchPattern": ""},
        "Socket": pipe,
        "Pipe": pipe,
    }


def _pipe_of(conn_data: dict[str, Any], file_id: object) -> PipeHandle | None:
    entry = conn_data["OpenedFiles"].get(file_id)
    pipe = entry.get("Pipe") if entry else None
    return pipe if isinstance(pipe, PipeHandle) else None


def _smb2_file_id(conn_data: dict[str, Any], raw: bytes) -> bytes:
    # A related compound request names the file of the preceding CREATE this way.
    if raw == b"\xff" * 16 and "SMB2_CREATE" in conn_data["LastRequest"]:
        file_id: bytes = conn_data["LastRequest"]["SMB2_CREATE"]["FileID"]
        return file_id
    return raw


class PipeRouter:
    """Installs the hooks on an impacket SMBSERVER and keeps its original handlers."""

    def __init__(self, server: Any, open_pipe: PipeOpener, release_pipe: PipeReleaser) -> None:
        self._open_pipe = open_pipe
        self._release_pipe = release_pipe
        self._smb2_original: dict[int, Callable[..., HandlerResult]] = {}
        for command, handler in (
            (smb2.SMB2_CREATE, self._smb2_create),
            (smb2.SMB2_WRITE, self._smb2_write),
            (smb2.SMB2_READ, self._smb2_read),
            (smb2.SMB2_IOCTL, self._smb2_ioctl),
            (smb2.SMB2_CLOSE, self._smb2_close),
        ):
            self._smb2_original[command] = server.hookSmb2Command(command, handler)
        self._smb1_original: dict[int, Callable[..., HandlerResult]] = {}
        smb1_hooks: tuple[tuple[int, Callable[..., HandlerResult]], ...] = (
            (smb.SMB.SMB_COM_NT_CREATE_ANDX, self._smb1_nt_create),
            (smb.SMB.SMB_COM_WRITE_ANDX, self._smb1_write),
            (smb.SMB.SMB_COM_READ_ANDX, self._smb1_read),
            (smb.SMB.SMB_COM_CLOSE, self._smb1_close),
        )
        for command, handler in smb1_hooks:
            self._smb1_original[command] = server.hookSmbCommand(command, handler)
        self._transact_original = server.hookTransaction(
            smb.SMB.TRANS_TRANSACT_NMPIPE, self._smb1_transact
        )

    # SMB2 ---------------------------------------------------------------

    def _smb2_create(self, conn_id: str, server: Any, packet: Any) -> HandlerResult:
        conn_data = server.getConnectionData(conn_id)
        request = smb2.SMB2Create(packet["Data"])
        name = request["Buffer"][: request["NameLength"]].decode("utf-16le", "replace")
        if not _is_ipc(conn_data, packet["TreeID"]) or _is_share_root(name):
            return self._smb2_original[smb2.SMB2_CREATE](conn_id, server, packet)
        if not is_srvsvc(name):
            return [smb2.SMB2Error()], None, STATUS_OBJECT_NAME_NOT_FOUND
        pipe = self._open_pipe(conn_id)
        if pipe is None:
            return [smb2.SMB2Error()], None, STATUS_OBJECT_NAME_NOT_FOUND
        file_id = os.urandom(16)
        response = smb2.SMB2Create_Response()
        response["CreateAction"] = smb2.FILE_OPENED
        response["AllocationSize"] = 4096
        response["FileAttributes"] = FILE_ATTRIBUTE_NORMAL
        response["FileID"] = file_id
        response["Buffer"] = b"\x00"
        conn_data["OpenedFiles"][file_id] = _pipe_entry(pipe, "srvsvc")
        conn_data["LastRequest"]["SMB2_CREATE"] = response
        return [response], None, STATUS_SUCCESS

    def _smb2_target(self, conn_id: str, server: Any, packet: Any, raw_id: bytes) -> Any:
        conn_data = server.getConnectionData(conn_id)
        if packet["TreeID"] not in conn_data["ConnectedShares"]:
            return conn_data, b"", None
        file_id = _smb2_file_id(conn_data, raw_id)
        return conn_data, file_id, _pipe_of(conn_data, file_id)

    def _smb2_write(self, conn_id: str, server: Any, packet: Any) -> HandlerResult:
        request = smb2.SMB2Write(packet["Data"])
        _, _, pipe = self._smb2_target(conn_id, server, packet, request["FileID"].getData())
        if pipe is None:
            return self._smb2_original[smb2.SMB2_WRITE](conn_id, server, packet)
        data = bytes(request["Buffer"])[: request["Length"]]
        status = _guarded(lambda: pipe.write(data))
        if status != STATUS_SUCCESS:
            return [smb2.SMB2Error()], None, status
        response = smb2.SMB2Write_Response()
        response["Count"] = len(data)
        return [response], None, STATUS_SUCCESS

    def _smb2_read(self, conn_id: str, server: Any, packet: Any) -> HandlerResult:
        request = smb2.SMB2Read(packet["Data"])
        _, _, pipe = self._smb2_target(conn_id, server, packet, request["FileID"].getData())
        if pipe is None:
            return self._smb2_original[smb2.SMB2_READ](conn_id, server, packet)
        chunk, more = pipe.read(request["Length"])
        if not chunk:
            return [smb2.SMB2Error()], None, STATUS_PIPE_EMPTY
        response = smb2.SMB2Read_Response()
        response["DataOffset"] = 0x50
        response["DataLength"] = len(chunk)
        response["Buffer"] = chunk
        return [response], None, STATUS_BUFFER_OVERFLOW if more else STATUS_SUCCESS

    def _smb2_ioctl(self, conn_id: str, server: Any, packet: Any) -> HandlerResult:
        request = smb2.SMB2Ioctl(packet["Data"])
        pipe = None
        if request["CtlCode"] == smb2.FSCTL_PIPE_TRANSCEIVE:
            _, _, pipe = self._smb2_target(conn_id, server, packet, request["FileID"].getData())
        if pipe is None:
            return self._smb2_original[smb2.SMB2_IOCTL](conn_id, server, packet)
        data = bytes(request["Buffer"])[: request["InputCount"]]
        reply: list[tuple[bytes, bool]] = []
        status = _guarded(lambda: reply.append(pipe.transceive(data, request["MaxOutputResponse"])))
        if status != STATUS_SUCCESS:
            return [smb2.SMB2Error()], None, status
        chunk, more = reply[0]
        response = smb2.SMB2Ioctl_Response()
        response["CtlCode"] = request["CtlCode"]
        response["FileID"] = request["FileID"]
        response["InputOffset"] = 0
        response["InputCount"] = 0
        response["OutputOffset"] = 0x70
        response["OutputCount"] = len(chunk)
        response["Flags"] = 0
        response["Buffer"] = chunk
        return [response], None, STATUS_BUFFER_OVERFLOW if more else STATUS_SUCCESS

    def _smb2_close(self, conn_id: str, server: Any, packet: Any) -> HandlerResult:
        request = smb2.SMB2Close(packet["Data"])
        conn_data, file_id, pipe = self._smb2_target(
            conn_id, server, packet, request["FileID"].getData()
        )
        if pipe is None:
            return self._smb2_original[smb2.SMB2_CLOSE](conn_id, server, packet)
        del conn_data["OpenedFiles"][file_id]
        self._release_pipe(conn_id, pipe)
        return [smb2.SMB2Close_Response()], None, STATUS_SUCCESS

    # SMB1 ---------------------------------------------------------------

    def _smb1_nt_create(self, conn_id: str, server: Any, command: Any, packet: Any) -> HandlerResult:
        conn_data = server.getConnectionData(conn_id)
        request_data = smb.SMBNtCreateAndX_Data(flags=packet["Flags2"], data=command["Data"])
        name = decodeSMBString(packet["Flags2"], request_data["FileName"])
        if not _is_ipc(conn_data, packet["Tid"]) or _is_share_root(name):
            original = self._smb1_original[smb.SMB.SMB_COM_NT_CREATE_ANDX]
            return original(conn_id, server, command, packet)
        response = smb.SMBCommand(smb.SMB.SMB_COM_NT_CREATE_ANDX)
        pipe = self._open_pipe(conn_id) if is_srvsvc(name) else None
        if pipe is None:
            response["Parameters"] = b""
            response["Data"] = b""
            return [response], None, STATUS_OBJECT_NAME_NOT_FOUND
        opened = conn_data["OpenedFiles"]
        fid = max((k for k in opened if isinstance(k, int)), default=0) + 1
        parameters = smb.SMBNtCreateAndXResponse_Parameters()
        parameters["Fid"] = fid
        parameters["CreateAction"] = smb2.FILE_OPENED
        parameters["FileAttributes"] = FILE_ATTRIBUTE_NORMAL
        parameters["AllocationSize"] = 4096
        parameters["FileType"] = FILE_TYPE_MESSAGE_MODE_PIPE
        parameters["IPCState"] = IPC_STATE_MESSAGE_PIPE
        parameters["IsDirectory"] = 0
        response["Parameters"] = parameters
        response["Data"] = b""
        opened[fid] = _pipe_entry(pipe, "srvsvc")
        return [response], None, STATUS_SUCCESS

    def _smb1_pipe(self, conn_id: str, server: Any, packet: Any, fid: int) -> PipeHandle | None:
        conn_data = server.getConnectionData(conn_id)
        if packet["Tid"] not in conn_data["ConnectedShares"]:
            return None
        return _pipe_of(conn_data, fid)

    def _smb1_write(self, conn_id: str, server: Any, command: Any, packet: Any) -> HandlerResult:
        if command["WordCount"] == 0x0C:
            parameters = smb.SMBWriteAndX_Parameters_Short(command["Parameters"])
            request_data = smb.SMBWriteAndX_Data_Short()
        else:
            parameters = smb.SMBWriteAndX_Parameters(command["Parameters"])
            request_data = smb.SMBWriteAndX_Data()
        pipe = self._smb1_pipe(conn_id, server, packet, parameters["Fid"])
        if pipe is None:
            return self._smb1_original[smb.SMB.SMB_COM_WRITE_ANDX](conn_id, server, command, packet)
        request_data["DataLength"] = parameters["DataLength"]
        request_data["DataOffset"] = parameters["DataOffset"]
        request_data.fromString(command["Data"])
        data = bytes(request_data["Data"])[: parameters["DataLength"]]
        response = smb.SMBCommand(smb.SMB.SMB_COM_WRITE_ANDX)
        status = _guarded(lambda: pipe.write(data))
        if status != STATUS_SUCCESS:
            response["Parameters"] = b""
            response["Data"] = b""
            return [response], None, status
        response_parameters = smb.SMBWriteAndXResponse_Parameters()
        response_parameters["Count"] = len(data)
        response_parameters["Available"] = 0
        response["Parameters"] = response_parameters
        response["Data"] = b""
        return [response], None, STATUS_SUCCESS

    def _smb1_read(self, conn_id: str, server: Any, command: Any, packet: Any) -> HandlerResult:
        if command["WordCount"] == 0x0A:
            parameters = smb.SMBReadAndX_Parameters2(command["Parameters"])
        else:
            parameters = smb.SMBReadAndX_Parameters(command["Parameters"])
        pipe = self._smb1_pipe(conn_id, server, packet, parameters["Fid"])
        if pipe is None:
            return self._smb1_original[smb.SMB.SMB_COM_READ_ANDX](conn_id, server, command, packet)
        response = smb.SMBCommand(smb.SMB.SMB_COM_READ_ANDX)
        chunk, more = pipe.read(parameters["MaxCount"])
        if not chunk:
            response["Parameters"] = b""
            response["Data"] = b""
            return [response], None, STATUS_PIPE_EMPTY
        response_parameters = smb.SMBReadAndXResponse_Parameters()
        response_parameters["DataCount"] = len(chunk)
        # SMB1 header (32) + WordCount (1) + 12 words + ByteCount (2).
        response_parameters["DataOffset"] = 59
        response_parameters["DataCount_Hi"] = 0
        response["Parameters"] = response_parameters
        response["Data"] = chunk
        return [response], None, STATUS_BUFFER_OVERFLOW if more else STATUS_SUCCESS

    def _smb1_close(self, conn_id: str, server: Any, command: Any, packet: Any) -> HandlerResult:
        fid = smb.SMBClose_Parameters(command["Parameters"])["FID"]
        pipe = self._smb1_pipe(conn_id, server, packet, fid)
        if pipe is None:
            return self._smb1_original[smb.SMB.SMB_COM_CLOSE](conn_id, server, command, packet)
        del server.getConnectionData(conn_id)["OpenedFiles"][fid]
        self._release_pipe(conn_id, pipe)
        response = smb.SMBCommand(smb.SMB.SMB_COM_CLOSE)
        response["Parameters"] = b""
        response["Data"] = b""
        return [response], None, STATUS_SUCCESS

    def _smb1_transact(
        self,
        conn_id: str,
        server: Any,
        packet: Any,
        parameters: bytes,
        data: bytes,
        max_data_count: int = 0,
    ) -> tuple[bytes, bytes, bytes, int]:
        command = smb.SMBCommand(packet["Data"][0])
        setup = smb.SMBTransaction_Parameters(command["Parameters"])["Setup"]
        fid = struct.unpack("<H", setup[2:4])[0]
        pipe = self._smb1_pipe(conn_id, server, packet, fid)
        if pipe is None:
            result: tuple[bytes, bytes, bytes, int] = self._transact_original(
                conn_id, server, packet, parameters, data, max_data_count
            )
            return result
        reply: list[tuple[bytes, bool]] = []
        status = _guarded(lambda: reply.append(pipe.transceive(bytes(data), max_data_count)))
        if status != STATUS_SUCCESS:
            return b"", b"", b"", status
        chunk, more = reply[0]
        return b"", b"", chunk, STATUS_BUFFER_OVERFLOW if more else STATUS_SUCCESS


def _guarded(action: Callable[[], object]) -> int:
    """Run a pipe operation; an endpoint failure becomes an NTSTATUS, not a dropped connection."""
    try:
        action()
    except PipeBusyError:
        return STATUS_PIPE_BUSY
    except PipeOverflowError as exc:
        LOG.warning("srvsvc pipe closed: %s", exc)
        return STATUS_INSUFFICIENT_RESOURCES
    except Exception:
        LOG.exception("srvsvc pipe endpoint failed")
        return STATUS_INTERNAL_ERROR
    return STATUS_SUCCESS
