"""Our own server (``smbsessions.server``) started in-process for interop tests, and the
peers that talk to it: rpcclient, impacket's srvs, Samba's Python bindings, our client.

Every peer answers the same question the same way (``EnumResult``: status,
entries as ``SessionInfo``, TotalEntries, ResumeHandle), so a rule test can be
written once and run through each peer that can express its request.

The server listens on a free port the kernel picks (port 0), with:

* ``alice``/``alicepw`` (admin) and ``bob``/``bobpw`` (plain user);
* IPC$ only (holders keep the srvsvc pipe open, which counts in num_opens);
* decoys from a ``--sessions-file`` style JSON file (``write_sessions_file``);
* a policy that can be switched between tests (``OurServer.policy``): it
  applies to srvsvc pipes opened after the switch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smbsessions.auth import ANONYMOUS, Credentials
from smbsessions.client import SessionClient
from smbsessions.levels import FIELDS, SessionInfo
from smbsessions.rules import SessionInfoPolicy
from smbsessions.server.decoys import load_sessions_file
from smbsessions.server.shell import SessionServer, build_server
from smbsessions.server.srvsvc import srvsvc_factory
from smbsessions.server.types import CallerInfo, PipeEndpoint, ServerControl

from .samba_py import samba_py_session_del, samba_py_session_enum

PORTS = (0,)  # the kernel picks a free port
ADMIN = ("alice", "alicepw")
USER = ("bob", "bobpw")
ACCOUNTS = [f"{ADMIN[0]}:{ADMIN[1]}:admin", f"{USER[0]}:{USER[1]}"]
SHARE = "IPC$"
DECOY_SHARE = "share"  # listed by NetrShareEnum, never served
RPCCLIENT = "/usr/bin/rpcclient"
CLI_TIMEOUT = 60.0


# --------------------------------------------------------------------------- the server


@dataclass
class OurServer:
    server: SessionServer
    share_dir: Path
    workdir: Path
    policy: SessionInfoPolicy = SessionInfoPolicy.ADMINS

    @property
    def host(self) -> str:
        return self.server.address[0]

    @property
    def port(self) -> int:
        return self.server.address[1]

    def live(self) -> list[SessionInfo]:
        """The live sessions (decoys have negative keys)."""
        return [info for key, info in self.server.snapshot() if key > 0]

    def wait_live(self, count: int, timeout: float = 5.0) -> list[SessionInfo]:
        """Wait until exactly ``count`` live sessions exist (closing peers leave asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.live()
            if len(live) == count or time.monotonic() >= deadline:
                return live
            time.sleep(0.01)

    @property
    def client_conf(self) -> Path:
        """smb.conf for rpcclient: keeps its caches out of /run/samba."""
        conf = self.workdir / "client.conf"
        if not conf.exists():
            state = self.workdir / "client-state"
            state.mkdir(exist_ok=True)
            conf.write_text(
                "[global]\n"
                + "".join(
                    f"  {key} = {state}\n"
                    for key in ("lock directory", "state directory", "cache directory",
                                "private dir", "pid directory", "ncalrpc dir")
                )
                + "  log level = 0\n"
            )
        return conf

    def rpcclient(
        self, cmd: str, user: str, password: str, *, debug: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """``rpcclient -c cmd`` against this server; the password travels in $PASSWD."""
        argv = [RPCCLIENT, "-s", str(self.client_conf), "-p", str(self.port)]
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PASSWD")}
        if user:
            argv += ["-U", user]
            env["PASSWD"] = password
        else:
            argv += ["-N", "-U", ""]
        if debug:
            argv.append("-d10")
        argv += [self.host, "-c", cmd]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def _factory(state: OurServer) -> Callable[[ServerControl], Callable[[CallerInfo], PipeEndpoint]]:
    def make(control: ServerControl) -> Callable[[CallerInfo], PipeEndpoint]:
        def open_pipe(caller: CallerInfo) -> PipeEndpoint:
            return srvsvc_factory(control, state.policy)(caller)

        return open_pipe

    return make


@contextlib.contextmanager
def running_server(
    workdir: Path,
    *,
    bind: str = "127.0.0.1",
    decoys: Sequence[SessionInfo] = (),
    policy: SessionInfoPolicy = SessionInfoPolicy.ADMINS,
    ports: Sequence[int] = PORTS,
) -> Iterator[OurServer]:
    """Our server on the first free port of ``ports``, stopped on exit."""
    share_dir = workdir / "share"
    share_dir.mkdir(parents=True, exist_ok=True)
    share_dir.chmod(0o1777)
    errors: list[str] = []
    for port in ports:
        state = OurServer(None, share_dir, workdir, policy)  # type: ignore[arg-type]
        try:
            server = build_server(
                bind, port, accounts=ACCOUNTS, decoys=decoys, make_pipe_factory=_factory(state),
                decoy_shares=[DECOY_SHARE],
            )
        except OSError as exc:
            errors.append(f"{port}: {exc}")
            continue
        state.server = server
        server.start()
        try:
            yield state
        finally:
            server.stop()
        return
    raise RuntimeError(f"no free port for our server in {list(ports)}: {errors}")


# --------------------------------------------------------------------------- decoys


def decoy_sessions(count: int, start: int = 0) -> list[SessionInfo]:
    """``count`` distinct decoys (unique client names), all fields filled."""
    return [
        SessionInfo(
            cname=f"\\\\10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
            username=f"decoy{i:05d}",
            num_opens=i % 7,
            time=1000 + i,
            idle_time=i % 300,
            user_flags=i % 2,
            cltype_name="SMB 3.1.1",
            transport="\\Device\\NetbiosSmb",
        )
        for i in range(start, start + count)
    ]


def write_sessions_file(path: Path, sessions: Sequence[SessionInfo]) -> Path:
    """The JSON ``smbsessions enum --format json`` prints (and ``--sessions-file`` reads)."""
    path.write_text(json.dumps([info.to_win32(502) for info in sessions]), encoding="utf-8")
    return path


def load_decoys(path: Path) -> list[SessionInfo]:
    return load_sessions_file(path)


# --------------------------------------------------------------------------- peers


@dataclass
class EnumResult:
    """One NetrSessionEnum answer as any peer reports it."""

    status: int
    entries: list[SessionInfo] = field(default_factory=list)
    total: int | None = None
    resume: int | None = None


SAMBA_FIELDS = {
    "client": "cname", "user": "username", "num_open": "num_opens", "time": "time",
    "idle_time": "idle_time", "user_flags": "user_flags", "client_type": "cltype_name",
    "transport": "transport",
}


def _from_samba_fields(values: dict[str, Any]) -> SessionInfo:
    return SessionInfo(**{SAMBA_FIELDS[k]: v for k, v in values.items() if k in SAMBA_FIELDS})


class _ProcessPeer:
    """A peer that starts a fresh client process per call: nothing to hold or close."""

    def __init__(self, srv: OurServer, user: str, password: str,
                 settle: Callable[[], object] | None = None) -> None:
        self.srv, self.user, self.password = srv, user, password
        self.settle = settle

    def close(self) -> None:
        pass


class SambaPyPeer(_ProcessPeer):
    """Samba's PIDL-generated client (python3-samba), one connection per call.

    Its bindings raise on every WERROR but 0, WERR_MORE_DATA included, so a
    small max_buffer shows the status and nothing else: it cannot page.
    """

    name = "samba_py"
    pages = False
    any_level = False  # its bindings encode only 0, 1, 2, 10, 502

    def enum(self, level: int, client: str | None = None, user: str | None = None,
             max_len: int = 0xFFFFFFFF, resume: int | None = 0) -> EnumResult:
        if self.settle:
            self.settle()
        out = samba_py_session_enum(self.srv.host, self.srv.port, self.user, self.password, level,
                                    client, user, max_len, resume, conf=self.srv.client_conf)
        if out["werror"] is None:
            raise AssertionError(f"samba_py failed: {out}")
        entries = [_from_samba_fields(e) for e in out.get("entries") or []]
        return EnumResult(out["werror"], entries, out.get("total"), out.get("resume"))

    def delete(self, client: str | None, user: str | None) -> dict[str, Any]:
        if self.settle:
            self.settle()
        return samba_py_session_del(self.srv.host, self.srv.port, self.user, self.password,
                                    client, user, conf=self.srv.client_conf)


class ImpacketPeer:
    """impacket's srvs over its SMB transport; one bound pipe per peer."""

    name = "impacket"
    pages = True
    any_level = True  # raw stubs through dce.call for levels its union lacks

    def __init__(self, srv: OurServer, user: str, password: str,
                 settle: Callable[[], object] | None = None) -> None:
        from impacket.dcerpc.v5 import srvs, transport

        self.srv = srv
        rpc = transport.SMBTransport(srv.host, dstport=srv.port, filename=r"\srvsvc",
                                     username=user, password=password)
        rpc.set_connect_timeout(10)
        self.dce = rpc.get_dce_rpc()
        self.dce.connect()
        self.dce.bind(srvs.MSRPC_UUID_SRVS)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.dce.disconnect()

    def enum(self, level: int, client: str | None = None, user: str | None = None,
             max_len: int = 0xFFFFFFFF, resume: int | None = 0) -> EnumResult:
        from impacket.dcerpc.v5 import srvs
        from impacket.dcerpc.v5.dtypes import NULL

        if level not in (0, 1, 2, 10, 502) or resume is None:
            return self._raw_enum(level, client, user, max_len, resume)
        request = srvs.NetrSessionEnum()
        request["ServerName"] = NULL
        request["ClientName"] = NULL if client is None else client + "\x00"
        request["UserName"] = NULL if user is None else user + "\x00"
        request["InfoStruct"]["Level"] = level
        request["InfoStruct"]["SessionInfo"]["tag"] = level
        request["InfoStruct"]["SessionInfo"][f"Level{level}"]["Buffer"] = NULL
        request["PreferedMaximumLength"] = max_len
        request["ResumeHandle"] = resume
        answer = self.dce.request(request, checkError=False)
        entries = []
        container = answer["InfoStruct"]["SessionInfo"][f"Level{level}"]
        for item in container["Buffer"] or []:
            values = {}
            for f in FIELDS:
                key = f"sesi{level}_{f.name}"
                if key in item.fields:
                    value = item[key]
                    values[f.name] = (None if value in (None, NULL) else str(value).rstrip("\x00")) \
                        if f.kind == "str" else int(value)
            entries.append(SessionInfo(**values))
        return EnumResult(answer["ErrorCode"], entries, answer["TotalEntries"], answer["ResumeHandle"])

    def _raw_enum(self, level: int, client: str | None, user: str | None, max_len: int,
                  resume: int | None) -> EnumResult:
        # impacket cannot express these (unknown levels, NULL ResumeHandle):
        # our encoder builds the stub, impacket's DCE/RPC layer carries it.
        from smbsessions.messages import EnumRequest
        from smbsessions.ndr import decode_enum_response, encode_enum_request

        stub = encode_enum_request(EnumRequest(level, None, client, user, max_len, resume))
        self.dce.call(12, stub)
        answer = decode_enum_response(self.dce.recv())
        return EnumResult(answer.status, answer.entries or [], answer.total_entries, answer.resume_handle)

    def delete(self, client: str | None, user: str | None) -> int:
        from impacket.dcerpc.v5 import srvs
        from impacket.dcerpc.v5.dtypes import NULL

        request = srvs.NetrSessionDel()
        request["ServerName"] = NULL
        request["ClientName"] = NULL if client is None else client + "\x00"
        request["UserName"] = NULL if user is None else user + "\x00"
        status: int = self.dce.request(request, checkError=False)["ErrorCode"]
        return status


class OursPeer:
    """Our SessionClient, one page per call (``enum_page``: no fallback, no filtering)."""

    name = "ours"
    pages = True
    any_level = True

    def __init__(self, srv: OurServer, user: str, password: str,
                 settle: Callable[[], object] | None = None) -> None:
        credentials = Credentials(username=user, password=password) if user else ANONYMOUS
        self.client = SessionClient(srv.host, srv.port, credentials=credentials).open()

    def close(self) -> None:
        self.client.close()

    def enum(self, level: int, client: str | None = None, user: str | None = None,
             max_len: int = 0xFFFFFFFF, resume: int | None = 0) -> EnumResult:
        from smbsessions.messages import EnumRequest
        from smbsessions.ndr import OPNUM_NETR_SESSION_ENUM, decode_enum_response, encode_enum_request

        # enum_page would normalise the client name; the rules tests need it verbatim.
        request = EnumRequest(level, None, client, user, max_len, resume)
        answer = decode_enum_response(
            self.client._call(OPNUM_NETR_SESSION_ENUM, encode_enum_request(request)))
        return EnumResult(answer.status, answer.entries or [], answer.total_entries, answer.resume_handle)


# --------------------------------------------------------------------------- rpcclient -d10


WERR_NUMBERS = {
    "WERR_OK": 0,
    "WERR_ACCESS_DENIED": 5,
    "WERR_NOT_ENOUGH_MEMORY": 8,
    "WERR_INVALID_PARAMETER": 87,
    "WERR_INVALID_PARAM": 87,
    "WERR_INVALID_LEVEL": 124,
    "WERR_UNKNOWN_LEVEL": 124,
    "WERR_MORE_DATA": 234,
    "WERR_NERR_USERNOTFOUND": 2221,
    "WERR_USER_NOT_FOUND": 2221,
    "WERR_NERR_CLIENTNAMENOTFOUND": 2312,
    "WERR_NERR_INVALIDCOMPUTER": 2351,
    "WERR_INVALID_COMPUTERNAME": 2351,
}

_ENTRY_RE = re.compile(r"^\s*array: struct srvsvc_NetSessInfo(\d+)\s*$")
_FIELD_RE = re.compile(r"^\s*(\w+)\s+: (.*)$")
_NUMBER_RE = re.compile(r"^0x[0-9a-fA-F]+ \((\d+)\)$")
_HEX_RE = re.compile(r"^0x([0-9a-fA-F]+)$")


def werror_number(name: str) -> int:
    """NET_API_STATUS of a WERR name rpcclient printed (``WERR_...`` or ``WERR_XXX_0x...``)."""
    if name in WERR_NUMBERS:
        return WERR_NUMBERS[name]
    match = re.search(r"0x([0-9a-fA-F]+)", name)
    if match:
        return int(match.group(1), 16)
    raise ValueError(f"unknown WERR name {name!r}")


def parse_netsessenum_debug(stdout: str) -> EnumResult:
    """Decode what ``rpcclient -d10 -c netsessenum`` printed of the reply (the ``out:`` part)."""
    _, sep, out = stdout.partition("out: struct srvsvc_NetSessEnum")
    if not sep:
        raise ValueError(f"no decoded reply in rpcclient output: {stdout[-1500:]!r}")
    entries: list[SessionInfo] = []
    current: dict[str, Any] | None = None
    total: int | None = None
    resume: int | None = None
    status: int | None = None
    pending_pointer: str | None = None
    for line in out.splitlines():
        if _ENTRY_RE.match(line):
            if current is not None:
                entries.append(_from_samba_fields(current))
            current = {}
            continue
        match = _FIELD_RE.match(line)
        if not match:
            continue
        name, value = match.group(1), match.group(2).strip()
        if name == "result":
            status = werror_number(value)
            break
        if value == "*":
            pending_pointer = name
            continue
        if value == "NULL":
            parsed: Any = None
        elif value.startswith("'") and value.endswith("'"):
            parsed = value[1:-1]
        elif _NUMBER_RE.match(value):
            parsed = int(_NUMBER_RE.match(value).group(1))  # type: ignore[union-attr]
        else:
            continue
        if name == "totalentries":
            total = parsed
        elif name == "resume_handle":
            resume = parsed
        elif current is not None and name in SAMBA_FIELDS and (
                pending_pointer == name or value == "NULL" or not isinstance(parsed, str)):
            current[name] = parsed
        pending_pointer = None
    if current is not None:
        entries.append(_from_samba_fields(current))
    if status is None:
        raise ValueError(f"no result in rpcclient output: {out[-1500:]!r}")
    return EnumResult(status, entries, total, resume)


def rpcclient_arg(value: str) -> str:
    """One ``-c`` argument: rpcclient un-escapes backslashes, so double them."""
    if not value or any(ch in value for ch in "\"'; \n"):
        raise ValueError(f"rpcclient cannot carry {value!r} as one argument")
    return value.replace("\\", "\\\\")


class RpcclientPeer(_ProcessPeer):
    """Samba's rpcclient (``netsessenum [client] [user] [level] [resume]``), one process per call.

    It always sends PreferedMaximumLength 0xFFFFFFFF, cannot send a user without
    a client (empty arguments are dropped), and sends a NULL ResumeHandle unless
    one is given.
    """

    name = "rpcclient"
    pages = False
    any_level = True

    def command(self, level: int, client: str | None, user: str | None, resume: int | None) -> str:
        args = ["netsessenum"]
        if client is not None:
            args.append(rpcclient_arg(client))
        elif user is not None or resume is not None or level != 1:
            raise ValueError("rpcclient needs a client name before any later argument")
        if user is not None:
            args.append(rpcclient_arg(user))
        elif resume is not None or level != 1:
            raise ValueError("rpcclient needs a user name before the level")
        if level != 1 or resume is not None:
            args.append(str(level))
        if resume is not None:
            args.append(str(resume))
        return " ".join(args)

    def enum(self, level: int, client: str | None = None, user: str | None = None,
             max_len: int = 0xFFFFFFFF, resume: int | None = None) -> EnumResult:
        if max_len != 0xFFFFFFFF:
            raise ValueError("rpcclient always sends MAX_PREFERRED_LENGTH")
        command = self.command(level, client, user, resume)
        if self.settle:
            self.settle()
        result = self.srv.rpcclient(command, self.user, self.password)
        return parse_netsessenum_debug(result.stderr)

    def delete(self, client: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = f"netsessdel {rpcclient_arg(client)}" + (f" {rpcclient_arg(user)}" if user else "")
        if self.settle:
            self.settle()
        return self.srv.rpcclient(cmd, self.user, self.password, debug=False)


def cli(*args: str, timeout: float = CLI_TIMEOUT, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``smbsessions`` command (the password in $SMBSESSIONS_PASSWORD)."""
    env = {k: v for k, v in os.environ.items() if k != "SMBSESSIONS_PASSWORD"}
    if password is not None:
        env["SMBSESSIONS_PASSWORD"] = password
    exe = Path(sys.executable).parent / "smbsessions"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
