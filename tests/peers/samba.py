"""A private Samba smbd for interop tests, started from a temporary directory.

Everything the server touches (config, passdb, tdbs, sockets, logs, the share)
lives under ``workdir``; /etc and /var/lib/samba are not edited. Unix accounts
are faked with nss_wrapper (``LD_PRELOAD``), so no ``useradd`` is needed.

Accounts (see docs/ARCHITECTURE.md, "Peers as measured", for why both group mappings are needed):

* ``alice`` / ``alicepw``: mapped to BUILTIN\\Administrators (may call
  NetrSessionEnum) and to Domain Admins (may call NetrSessionDel).
* ``bob`` / ``bobpw``: a plain user (gets ERROR_ACCESS_DENIED).

Root is required: smbd switches to the users' uids. ``unavailable_reason()``
says why the server cannot run here (tests turn that into a skip).

Samba facts the class works around:

* ``smbd -D`` returns before it listens, so ``start()`` waits until the daemon
  itself owns a listening socket on the port (not just "something answers").
* samba-dcerpcd is spawned on the first RPC, detaches into its own process
  group and outlives smbd: ``stop()`` kills it through its pid file too and
  then waits until no live process names this instance's smb.conf. Orphans are
  reaped late by pid 1, so a zombie counts as gone.
* The first RPC costs ~0.2 s while samba-dcerpcd starts: ``warm_up()``.
* rpcclient drops empty arguments and un-escapes backslashes inside ``-c``:
  build arguments with ``rpcclient_arg()``.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

DEFAULT_BIND_ADDRS: tuple[str, ...] = ("127.0.0.1", "::1")
SHARE_NAME = "share"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 3.0
POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class Account:
    """A test account of the private server."""

    name: str
    password: str
    uid: int
    enum_admin: bool  # BUILTIN\Administrators: may enumerate sessions
    del_admin: bool  # Domain Admins: may delete sessions


ALICE = Account("alice", "alicepw", 20001, enum_admin=True, del_admin=True)
BOB = Account("bob", "bobpw", 20002, enum_admin=False, del_admin=False)
ACCOUNTS: tuple[Account, ...] = (ALICE, BOB)

_ENUM_ADMIN_GID = 20100
_DEL_ADMIN_GID = 20101


class SambaError(RuntimeError):
    """The private Samba server could not be started, used or stopped."""


class PortInUseError(SambaError):
    """Something already listens on the requested port."""


def find_smbd() -> str | None:
    """Path of the smbd binary, or None."""
    found = shutil.which("smbd")
    if found:
        return found
    return "/usr/sbin/smbd" if os.access("/usr/sbin/smbd", os.X_OK) else None


def find_nss_wrapper() -> str | None:
    """Path of libnss_wrapper.so, or None."""
    candidates = [Path("/usr/lib/x86_64-linux-gnu/libnss_wrapper.so")]
    candidates += sorted(Path("/usr/lib").glob("*/libnss_wrapper.so"))
    candidates.append(Path("/usr/lib/libnss_wrapper.so"))
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return None


def _find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/bin", "/usr/sbin"):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def unavailable_reason() -> str | None:
    """Why a private smbd cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "not root: smbd must run as root to switch to the test users' uids"
    missing = [
        name
        for name, found in (
            ("smbd", find_smbd()),
            ("rpcclient", _find_tool("rpcclient")),
            ("smbpasswd", _find_tool("smbpasswd")),
            ("net", _find_tool("net")),
            ("libnss_wrapper.so", find_nss_wrapper()),
        )
        if not found
    ]
    if missing:
        return "missing " + ", ".join(missing) + " (run scripts/install-peers.sh as root)"
    return None


def _require_loopback(address: str) -> None:
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address!r} is not a loopback address; tests stay on loopback")


def port_is_free(port: int, addrs: Iterable[str] = DEFAULT_BIND_ADDRS) -> bool:
    """True if every address in ``addrs`` could bind a listener on ``port``."""
    for addr in addrs:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR ignores TIME_WAIT leftovers but still fails on a listener.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((addr, port))
            except OSError:
                return False
    return True


def rpcclient_arg(value: str) -> str:
    """Quote one argument for an rpcclient ``-c`` command line.

    rpcclient un-escapes backslashes (``\\\\host`` arrives as ``\\host``), so
    they are doubled here; it silently drops empty arguments (``""``), which
    shifts the later ones, so an empty value is refused: pass a dummy value
    (Samba ignores NetrSessionEnum's qualifiers anyway).
    """
    if value == "":
        raise ValueError("rpcclient drops empty arguments; use a placeholder value")
    if any(ch in value for ch in "\"';\n"):
        raise ValueError(f"rpcclient cannot carry {value!r} in one argument")
    escaped = value.replace("\\", "\\\\")
    return f'"{escaped}"' if any(ch.isspace() for ch in value) else escaped


_RECEIVED_RE = re.compile(r"Received (\d+) entries\.")
_RESULT_RE = re.compile(r"result was (\S+)")


def parse_netsessenum_count(stdout: str) -> int | None:
    """The count rpcclient's ``netsessenum`` prints, or None if it printed none."""
    match = _RECEIVED_RE.search(stdout)
    return int(match.group(1)) if match else None


def parse_rpcclient_result(stdout: str) -> str | None:
    """The WERR name from ``result was WERR_...``, or None on success."""
    match = _RESULT_RE.search(stdout)
    return match.group(1) if match else None


def _process_state(pid: int) -> str | None:
    """Single-letter /proc state, or None if the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0]


def _is_alive(pid: int) -> bool:
    state = _process_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            # cols[1] is local "ADDR:PORT" in hex, cols[3] the state (0A = LISTEN).
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def _owns_listener(pid: int, port: int) -> bool:
    wanted = _listening_inodes(port)
    if not wanted:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in wanted:
            return True
    return False


class SambaServer:
    """One private smbd on a loopback port. Use as a context manager.

    ``bind_addrs`` are the addresses smbd listens on (loopback only);
    ``extra_bind_addrs`` are appended to them. ``extra_global`` lines go into
    the ``[global]`` section (e.g. ``"hostname lookups = yes"``).
    """

    def __init__(
        self,
        port: int,
        workdir: str | os.PathLike[str] | None = None,
        bind_addrs: Sequence[str] = DEFAULT_BIND_ADDRS,
        *,
        extra_bind_addrs: Sequence[str] = (),
        extra_global: Sequence[str] = (),
        log_level: int = 1,
        keep_workdir: bool = False,
    ) -> None:
        addrs = tuple(bind_addrs) + tuple(extra_bind_addrs)
        if not addrs:
            raise ValueError("at least one bind address is needed")
        for addr in addrs:
            _require_loopback(addr)
        self.port = port
        self.bind_addrs = addrs
        self.extra_global = tuple(extra_global)
        self.log_level = log_level
        self.keep_workdir = keep_workdir
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir is not None else None
        self._nss_wrapper: str | None = None
        self._started = False

    # ----------------------------------------------------------------- paths
    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise SambaError("server not started yet: no workdir")
        return self._workdir

    @property
    def conf(self) -> Path:
        """smb.conf of this instance (its path identifies our processes)."""
        return self.workdir / "etc" / "smb.conf"

    @property
    def client_conf(self) -> Path:
        """Config for rpcclient/smbclient/python3-samba: keeps them out of /run/samba."""
        return self.workdir / "etc" / "client.conf"

    @property
    def share_dir(self) -> Path:
        return self.workdir / SHARE_NAME

    @property
    def share_name(self) -> str:
        return SHARE_NAME

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    @property
    def host(self) -> str:
        """The first bind address: where clients connect by default."""
        return self.bind_addrs[0]

    @property
    def admin(self) -> Account:
        return ALICE

    @property
    def user(self) -> Account:
        return BOB

    @property
    def smbd_pid(self) -> int | None:
        return self._read_pid("smbd.pid")

    def _read_pid(self, name: str) -> int | None:
        if self._workdir is None:
            return None
        try:
            return int((self._workdir / "run" / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def tool_env(self) -> dict[str, str]:
        """Environment for Samba's admin tools (net, pdbedit, smbstatus): fake accounts."""
        env = dict(os.environ)
        env.pop("PASSWD", None)
        if self._nss_wrapper is None:
            self._nss_wrapper = find_nss_wrapper()
        if self._nss_wrapper is None:
            raise SambaError("libnss_wrapper.so not found")
        env["LD_PRELOAD"] = self._nss_wrapper
        env["NSS_WRAPPER_PASSWD"] = str(self.workdir / "etc" / "passwd")
        env["NSS_WRAPPER_GROUP"] = str(self.workdir / "etc" / "group")
        return env

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> SambaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def is_running(self) -> bool:
        pid = self.smbd_pid
        return pid is not None and _is_alive(pid) and str(self.conf) in _cmdline(pid)

    def start(self) -> None:
        """Write the config, create the accounts, start smbd and wait until it listens."""
        if self._started:
            raise SambaError("already started")
        reason = unavailable_reason()
        if reason:
            raise SambaError(reason)
        if not port_is_free(self.port, self.bind_addrs):
            raise PortInUseError(f"port {self.port} is already in use")
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="smbsessions-samba-", dir="/tmp"))
        self._workdir = self._workdir.resolve()
        if self.is_running():
            raise SambaError(f"an smbd for {self._workdir} is already running")
        self._started = True
        # Registered before anything can fail so that a half-started server is
        # still torn down if the test process exits without calling stop().
        atexit.register(self.stop)
        try:
            self._write_files()
            self._create_accounts()
            self._launch()
        except BaseException:
            self.stop()
            raise

    def _write_files(self) -> None:
        w = self.workdir
        # mkdtemp makes 0700; bob (not root) must traverse it to reach the share.
        w.chmod(0o755)
        for sub in (
            "etc",
            "private",
            "lock",
            "state",
            "cache",
            "run/ncalrpc",
            "log",
            "client",
            SHARE_NAME,
            "usershares",
        ):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / SHARE_NAME).chmod(0o1777)
        (w / "private").chmod(0o700)

        passwd = ["root:x:0:0:root:/root:/bin/false", "nobody:x:65534:65534:nobody:/nonexistent:/bin/false"]
        group = ["root:x:0:", "nogroup:x:65534:"]
        for acct in ACCOUNTS:
            passwd.append(f"{acct.name}:x:{acct.uid}:{acct.uid}:{acct.name}:{w / SHARE_NAME}:/bin/false")
            group.append(f"{acct.name}:x:{acct.uid}:")
        enum_admins = ",".join(a.name for a in ACCOUNTS if a.enum_admin)
        del_admins = ",".join(a.name for a in ACCOUNTS if a.del_admin)
        group.append(f"smbadmins:x:{_ENUM_ADMIN_GID}:{enum_admins}")
        group.append(f"smbdomadmins:x:{_DEL_ADMIN_GID}:{del_admins}")
        (w / "etc" / "passwd").write_text("\n".join(passwd) + "\n")
        (w / "etc" / "group").write_text("\n".join(group) + "\n")

        extra = "".join(f"  {line}\n" for line in self.extra_global)
        self.conf.write_text(
            "[global]\n"
            "  server role = standalone server\n"
            "  workgroup = TESTBED\n"
            "  netbios name = SMBTESTBED\n"
            f"  smb ports = {self.port}\n"
            f"  interfaces = {' '.join(self.bind_addrs)}\n"
            "  bind interfaces only = yes\n"
            "  disable netbios = yes\n"
            f"  private dir = {w}/private\n"
            f"  lock directory = {w}/lock\n"
            f"  state directory = {w}/state\n"
            f"  cache directory = {w}/cache\n"
            f"  pid directory = {w}/run\n"
            # samba-dcerpcd's named-pipe sockets live under here.
            f"  ncalrpc dir = {w}/run/ncalrpc\n"
            f"  passdb backend = tdbsam:{w}/private/passdb.tdb\n"
            f"  log level = {self.log_level}\n"
            "  max log size = 0\n"
            "  load printers = no\n"
            "  printing = bsd\n"
            "  printcap name = /dev/null\n"
            "  disable spoolss = yes\n"
            "  map to guest = never\n"
            f"  usershare path = {w}/usershares\n"
            "  usershare max shares = 0\n"
            f"{extra}"
            "\n"
            f"[{SHARE_NAME}]\n"
            f"  path = {w / SHARE_NAME}\n"
            "  read only = no\n"
        )
        self.client_conf.write_text(
            "[global]\n"
            f"  lock directory = {w}/client\n"
            f"  state directory = {w}/client\n"
            f"  cache directory = {w}/client\n"
            f"  private dir = {w}/client\n"
            f"  pid directory = {w}/client\n"
            f"  ncalrpc dir = {w}/client\n"
            "  log level = 0\n"
        )

    def _run_tool(self, argv: list[str], stdin: str | None = None) -> None:
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            env=self.tool_env(),
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            # argv never holds a password (smbpasswd reads it from stdin).
            raise SambaError(
                f"{' '.join(argv)} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )

    def _create_accounts(self) -> None:
        smbpasswd = _find_tool("smbpasswd") or "smbpasswd"
        net = _find_tool("net") or "net"
        conf = str(self.conf)
        for acct in ACCOUNTS:
            self._run_tool(
                [smbpasswd, "-c", conf, "-s", "-a", acct.name], stdin=f"{acct.password}\n{acct.password}\n"
            )
        self._run_tool(
            [
                net,
                "-s",
                conf,
                "groupmap",
                "add",
                "sid=S-1-5-32-544",
                "unixgroup=smbadmins",
                "type=builtin",
                "ntgroup=Administrators",
            ]
        )
        self._run_tool(
            [
                net,
                "-s",
                conf,
                "groupmap",
                "add",
                "rid=512",
                "unixgroup=smbdomadmins",
                "type=domain",
                "ntgroup=Domain Admins",
            ]
        )

    def _launch(self) -> None:
        smbd = find_smbd() or "smbd"
        # -l is handed on to samba-dcerpcd/rpcd_* too, so they log under workdir.
        self._run_tool([smbd, "-D", "-s", str(self.conf), "-l", str(self.log_dir)])
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            pid = self.smbd_pid
            if pid is not None and _is_alive(pid) and _owns_listener(pid, self.port):
                return
            if pid is not None and _process_state(pid) is None:
                break  # daemon died (bad config, port taken)
            time.sleep(POLL_INTERVAL)
        raise SambaError(f"smbd did not come up on port {self.port}; log:\n{self.smbd_log()}")

    def smbd_log(self, lines: int = 30) -> str:
        """The tail of smbd's log (for failure messages)."""
        try:
            text = (self.log_dir / "log.smbd").read_text(errors="replace")
        except OSError:
            return "(no log.smbd)"
        return "\n".join(text.splitlines()[-lines:])

    def _our_pids(self) -> list[int]:
        """Live processes whose command line names this instance's smb.conf."""
        marker = str(self.conf)
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                pid = int(entry)
                if pid != os.getpid() and marker in _cmdline(pid) and _is_alive(pid):
                    pids.append(pid)
        return pids

    def _wait_gone(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        left = self._our_pids()
        while left and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL * 2)
            left = self._our_pids()
        return left

    def stop(self) -> None:
        """Stop smbd and samba-dcerpcd/rpcd_*; wait (bounded) until they are gone.

        Safe to call twice and on a half-started server. Raises SambaError if
        processes survive SIGKILL.
        """
        if not self._started:
            return
        self._started = False
        atexit.unregister(self.stop)
        marker = str(self.conf)
        for name in ("smbd.pid", "samba-dcerpcd.pid"):
            pid = self._read_pid(name)
            if pid is None or not _is_alive(pid) or marker not in _cmdline(pid):
                continue  # stale pid file: the number may belong to someone else now
            with contextlib.suppress(ProcessLookupError):
                # Both daemons lead their own process group; their workers are in it.
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGTERM)
                else:
                    os.kill(pid, signal.SIGTERM)
        left = self._wait_gone(STOP_TIMEOUT)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            left = self._wait_gone(KILL_TIMEOUT)
        for name in ("smbd.pid", "samba-dcerpcd.pid"):
            (self.workdir / "run" / name).unlink(missing_ok=True)
        if left:
            raise SambaError(f"Samba processes survived SIGKILL: {left}")
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ----------------------------------------------------------------- tools
    def rpcclient(
        self,
        cmd: str,
        user: str,
        password: str,
        *,
        debug: bool = False,
        host: str | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rpcclient -c cmd`` against this server; never raises on a non-zero exit.

        The password travels in the ``PASSWD`` environment variable, so it is
        not in ``CompletedProcess.args`` (which test failures print). An empty
        ``user`` means anonymous. ``debug`` adds ``-d10``, which makes rpcclient
        print the decoded NDR (netsessenum alone prints only a count). Build
        arguments inside ``cmd`` with ``rpcclient_arg()``.
        """
        target = host or self.host
        _require_loopback(target)
        rpcclient = _find_tool("rpcclient") or "rpcclient"
        argv = [rpcclient, "-s", str(self.client_conf), "-p", str(self.port)]
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        if user:
            argv += ["-U", user]
            env["PASSWD"] = password
        else:
            argv += ["-N", "-U", ""]
            env.pop("PASSWD", None)
        if debug:
            argv.append("-d10")
        argv += [target, "-c", cmd]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)

    def warm_up(self) -> None:
        """Make one RPC so samba-dcerpcd is running before timing-sensitive tests."""
        result = self.rpcclient("netsessenum", ALICE.name, ALICE.password)
        if result.returncode != 0 or parse_netsessenum_count(result.stdout) is None:
            raise SambaError(
                f"warm-up netsessenum failed ({result.returncode}): "
                f"{(result.stdout + result.stderr).strip()[-500:]}"
            )
