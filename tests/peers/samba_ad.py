"""A private Samba Active Directory domain and member server in network namespaces, for -k.

Layout (root needed; nothing leaves this machine, nothing routes out):

    netns smbskrb-dc   bridge smbskrb-br 10.231.0.1  dc1.smbskrb.test: samba (KDC, DNS, LDAP, SMB)
      |-- veth --> netns smbskrb-cli  10.231.0.2  the client (our CLI, kinit) runs here
      |-- veth --> netns smbskrb-mem  10.231.0.3  fs1.smbskrb.test: smbd + winbindd, joined
                                                  to the domain (security = ads)

``ip netns exec`` bind-mounts ``/etc/netns/<ns>/resolv.conf`` and ``krb5.conf`` over
/etc: in every namespace DNS is the DC and krb5.conf names the realm with
``dns_lookup_kdc``, as on a domain member, so ``kinit`` and ``-k`` find the KDC the
way users' machines do. Tests of ``--dc-ip`` point ``KRB5_CONFIG`` at a krb5.conf
that names no KDC instead.

The domain ``SMBSKRB`` / realm ``SMBSKRB.TEST`` is provisioned with
``samba-tool domain provision`` into a temporary directory (config, databases,
sockets, logs: /etc/samba and /var/lib/samba are not touched) with users:

* ``Administrator`` (the built-in domain admin) and ``alice``, a member of Domain
  Admins (so of BUILTIN\\Administrators on the DC and the member: may enumerate and
  delete sessions);
* ``bob``, a plain user (gets ERROR_ACCESS_DENIED).

Both servers' smbd map users to Unix ids through winbindd; since /etc/nsswitch.conf
may not name winbind, nss_wrapper loads libnss_winbind for the daemons and
``SELFTEST_WINBINDD_SOCKET_DIR`` points it at that server's own winbindd (the same
trick as Samba's selftest).

Teardown kills the daemons by pid (process groups, then whatever still names one of
our smb.conf files), deletes the namespaces and /etc/netns entries, removes the
workdir.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REALM = "SMBSKRB.TEST"
DOMAIN = "SMBSKRB"
DNS_DOMAIN = "smbskrb.test"
DC_NAME = "dc1"
DC_FQDN = f"{DC_NAME}.{DNS_DOMAIN}"
DC_IP = "10.231.0.1"
CLIENT_IP = "10.231.0.2"
NS_DC = "smbskrb-dc"
NS_CLIENT = "smbskrb-cli"
VETH_DC = "smbskrb-v0"
VETH_CLIENT = "smbskrb-v1"
BRIDGE = "smbskrb-br"
NS_MEMBER = "smbskrb-mem"
MEMBER_NAME = "fs1"
MEMBER_FQDN = f"{MEMBER_NAME}.{DNS_DOMAIN}"
MEMBER_IP = "10.231.0.3"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class DomainAccount:
    name: str
    password: str
    admin: bool

    @property
    def principal(self) -> str:
        return f"{self.name}@{REALM}"


ADMINISTRATOR = DomainAccount("Administrator", "Adm1n-Pass!4485", admin=True)
ALICE = DomainAccount("alice", "Al1ce-Pass!4485", admin=True)
BOB = DomainAccount("bob", "B0b-Pass!4485", admin=False)


class SambaADError(RuntimeError):
    """The domain controller could not be provisioned, started or stopped."""


class NamespacesBusyError(SambaADError):
    """Our namespaces exist with processes in them: another run of this fixture is active."""


def _which(name: str) -> str | None:
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        path = Path(directory, name)
        if path.exists():
            return str(path)
    return shutil.which(name)


def find_lib(name: str) -> str | None:
    for pattern in (f"/usr/lib/x86_64-linux-gnu/{name}", f"/lib/x86_64-linux-gnu/{name}",
                    f"/usr/lib/*/{name}", f"/lib/*/{name}", f"/usr/lib/{name}"):
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            return str(path)
    return None


def unavailable_reason() -> str | None:
    """Why the AD DC fixture cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces and samba need root)"
    missing = [tool for tool in ("samba", "samba-tool", "ip", "kinit", "klist", "wbinfo") if _which(tool) is None]
    if not Path("/usr/share/samba/setup").exists():
        missing.append("samba-ad-provision (samba-ad-dc)")
    for lib in ("libnss_wrapper.so", "libnss_winbind.so.2"):
        if find_lib(lib) is None:
            missing.append(lib)
    if missing:
        return "missing: " + ", ".join(missing) + " (scripts/install-peers.sh installs them)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _ns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _ns_pids(name: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10)
    return [int(x) for x in result.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _listening_ports(pid: int) -> set[int]:
    """TCP ports listening in the network namespace of ``pid`` (from its /proc/PID/net)."""
    ports: set[int] = set()
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class SambaAD:
    """A provisioned, running Samba AD DC. ``start()``/``stop()`` or a ``with`` block."""

    def __init__(self, *, member: bool = True, keep_workdir: bool = False) -> None:
        self.member = member
        """Also join a member file server (fs1) to the domain."""
        self.keep_workdir = keep_workdir
        self.member_pids: list[int] = []
        self.member_seconds: float | None = None
        self.workdir: Path | None = None
        self.samba_pid: int | None = None
        self.start_seconds: float | None = None
        """Wall time of ``start()``: namespaces + provision + users + daemon ready."""
        self.provision_seconds: float | None = None
        self._netns_made: list[str] = []
        self._etc_made: list[Path] = []

    # ----------------------------------------------------------------- paths
    @property
    def w(self) -> Path:
        if self.workdir is None:
            raise SambaADError("not started")
        return self.workdir

    @property
    def conf(self) -> Path:
        return self.w / "etc" / "smb.conf"

    @property
    def kdc_log(self) -> Path:
        return self.w / "log" / "log.samba"

    @property
    def client_krb5_conf_no_kdc(self) -> Path:
        """A krb5.conf knowing the realm but no KDC and no DNS lookups (for --dc-ip)."""
        return self.w / "client" / "krb5-no-kdc.conf"

    @property
    def member_dir(self) -> Path:
        return self.w / "member"

    @property
    def member_conf(self) -> Path:
        return self.member_dir / "etc" / "smb.conf"

    def daemon_env(self, base: Path | None = None) -> dict[str, str]:
        """Environment for the daemons under ``base`` (default: the DC's workdir)."""
        w = base or self.w
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KRB5", "NSS_WRAPPER"))}
        env.update(
            LD_PRELOAD=find_lib("libnss_wrapper.so") or "",
            NSS_WRAPPER_PASSWD=str(w / "etc" / "passwd"),
            NSS_WRAPPER_GROUP=str(w / "etc" / "group"),
            NSS_WRAPPER_MODULE_SO_PATH=find_lib("libnss_winbind.so.2") or "",
            NSS_WRAPPER_MODULE_FN_PREFIX="winbind",
            SELFTEST_WINBINDD_SOCKET_DIR=str(w / "run" / "winbindd"),
        )
        return env

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> SambaAD:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise SambaADError(reason)
        began = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="smbskrb-ad-", dir="/tmp")).resolve()
        self.w.chmod(0o755)
        atexit.register(self.stop)
        try:
            self._make_namespaces()
            self._provision()
            self._add_users()
            self._launch()
            self._wait_ready(began + START_TIMEOUT)
            if self.member:
                member_began = time.monotonic()
                self._start_member(member_began + START_TIMEOUT)
                self.member_seconds = time.monotonic() - member_began
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def _make_namespaces(self) -> None:
        for ns in (NS_DC, NS_CLIENT, NS_MEMBER):
            if _ns_exists(ns):
                if _ns_pids(ns):
                    raise NamespacesBusyError(f"netns {ns} exists and has processes: another run is active")
                _ip("netns", "del", ns)  # left over by a killed run of ours
        _ip("netns", "add", NS_DC)
        self._netns_made.append(NS_DC)
        # A bridge in the DC's namespace carries its address; every other namespace
        # hangs off it by a veth pair (one broadcast domain, no router, no way out).
        _ip("-n", NS_DC, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", NS_DC, "addr", "add", f"{DC_IP}/24", "dev", BRIDGE)
        _ip("-n", NS_DC, "link", "set", "lo", "up")
        _ip("-n", NS_DC, "link", "set", BRIDGE, "up")
        self.attach(NS_CLIENT, CLIENT_IP, VETH_DC, VETH_CLIENT)
        self._write_etc(NS_DC)
        self._write_etc(NS_CLIENT)

    def _write_etc(self, ns: str) -> None:
        """DNS of namespace ``ns`` is the DC; its "system" krb5.conf finds the realm's
        KDC through DNS SRV records, as on a domain member."""
        etc = Path("/etc/netns", ns)
        etc.mkdir(parents=True, exist_ok=True)
        self._etc_made.append(etc)
        (etc / "resolv.conf").write_text(f"nameserver {DC_IP}\nsearch {DNS_DOMAIN}\n")
        (etc / "krb5.conf").write_text(
            "[libdefaults]\n"
            f"    default_realm = {REALM}\n"
            "    dns_lookup_kdc = true\n"
            "    dns_lookup_realm = false\n"
            "    rdns = false\n"
            "    udp_preference_limit = 1\n"  # TCP only: one AS exchange per ticket in the KDC log
            "[domain_realm]\n"
            f"    .{DNS_DOMAIN} = {REALM}\n"
        )

    def attach(self, ns: str, address: str, bridge_end: str, ns_end: str) -> None:
        """Create netns ``ns`` (unless it exists) with ``address`` on the DC's bridge."""
        if ns not in self._netns_made:
            _ip("netns", "add", ns)
            self._netns_made.append(ns)
        _ip("link", "add", bridge_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", bridge_end, "netns", NS_DC)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("-n", NS_DC, "link", "set", bridge_end, "master", BRIDGE)
        _ip("-n", NS_DC, "link", "set", bridge_end, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", ns_end)
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", ns_end, "up")

    def _provision(self) -> None:
        w = self.w
        for sub in ("run/ncalrpc", "run/winbindd", "log", "client", "etc"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        (w / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        (w / "client" / "krb5-no-kdc.conf").write_text(
            f"[libdefaults]\n    default_realm = {REALM}\n    dns_lookup_kdc = false\n"
            "    dns_lookup_realm = false\n    rdns = false\n"
        )
        options = {
            "interfaces": DC_IP,
            "bind interfaces only": "yes",
            "pid directory": str(w / "run"),
            "ncalrpc dir": str(w / "run" / "ncalrpc"),
            "winbindd socket directory": str(w / "run" / "winbindd"),
            "ntp signd socket directory": str(w / "run" / "ntp_signd"),
            "log file": str(w / "log" / "log.%m"),
            "dns forwarder": DC_IP,  # never forward: the namespace has no way out anyway
            # auth_audit:3 logs one line per KDC authentication (an AS-REQ that
            # succeeded or failed): as_req_count() counts them.
            "log level": "1 auth_audit:3",
        }
        argv = [
            "samba-tool", "domain", "provision",
            f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc",
            "--dns-backend=SAMBA_INTERNAL", f"--host-name={DC_NAME}", f"--host-ip={DC_IP}",
            f"--targetdir={w}", "--use-rfc2307",
        ]
        argv += [f"--option={k}={v}" for k, v in options.items()]
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        # Made-up passwords of a throwaway test domain: samba-tool takes them in argv only.
        argv.append(f"--adminpass={ADMINISTRATOR.password}")
        began = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
        self.provision_seconds = time.monotonic() - began
        (w / "log" / "provision.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise SambaADError(f"samba-tool domain provision failed: {(result.stdout + result.stderr)[-1500:]}")

    def samba_tool(self, *args: str, check: bool = True, timeout: float = 60,
                   in_namespace: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``samba-tool ARGS -s smb.conf``: on the DC's databases, or with
        ``in_namespace`` inside the DC's namespace (subcommands that talk RPC, e.g. dns)."""
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        prefix = ["ip", "netns", "exec", NS_DC] if in_namespace else []
        result = subprocess.run([*prefix, "samba-tool", *args, "-s", str(self.conf)], capture_output=True,
                                text=True, env=env, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise SambaADError(f"samba-tool {args[:2]} failed: {(result.stdout + result.stderr)[-800:]}")
        return result

    def _add_users(self) -> None:
        # samba-tool takes the (made-up, test-only) passwords in argv.
        self.samba_tool("domain", "passwordsettings", "set", "--max-pwd-age=0", "--complexity=on")
        for account in (ALICE, BOB):
            self.samba_tool("user", "create", account.name, account.password)
        self.samba_tool("group", "addmembers", "Domain Admins", ALICE.name)

    def _launch(self) -> None:
        log = open(self.w / "log" / "samba.out", "wb")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", NS_DC, _which("samba") or "samba", "-s", str(self.conf),
                 "-F", "--no-process-group"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.daemon_env(), start_new_session=True,
            )
        finally:
            log.close()
        self.samba_pid = proc.pid  # ip netns exec execs samba: the same pid

    def _wait_ready(self, deadline: float) -> None:
        pid = self.samba_pid
        assert pid is not None
        needed = {88, 445, 53, 389}
        while time.monotonic() < deadline:
            if not _alive(pid):
                raise SambaADError(f"samba exited: {self.tail('samba.out')}")
            ports: set[int] = set()
            for child in self._our_pids():
                ports |= _listening_ports(child)
                if needed <= ports:
                    break
            if needed <= ports and self._kdc_answers():
                return
            time.sleep(0.1)
        raise SambaADError(f"samba not ready within {START_TIMEOUT:g} s: {self.tail('samba.out')}")

    def _kdc_answers(self) -> bool:
        """One kinit of bob: the KDC answers and DNS knows the realm (the SRV lookup)."""
        result = self.client_run(["kinit", BOB.principal], input_text=BOB.password + "\n",
                                 env={"KRB5CCNAME": f"FILE:{self.w}/client/ready.cc"}, timeout=15)
        return result.returncode == 0

    def tail(self, name: str, chars: int = 1500) -> str:
        try:
            return (self.w / "log" / name).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def _our_pids(self) -> list[int]:
        """Every live process of this DC: its smb.conf path is on their command line."""
        if self.workdir is None:
            return []
        markers = (str(self.conf), str(self.member_conf))
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            line = _cmdline(int(entry))
            if any(m in line for m in markers) and _alive(int(entry)):
                pids.append(int(entry))
        return pids

    def stop(self) -> None:
        """Kill the DC (by pid), delete the namespaces and the workdir; safe to repeat."""
        atexit.unregister(self.stop)
        for member_pid in self.member_pids:
            if _alive(member_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(member_pid, signal.SIGTERM)
        self.member_pids.clear()
        pid = self.samba_pid
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            time.sleep(0.2)
        # samba-dcerpcd (started on the first RPC) leads its own process group.
        for left in self._our_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGTERM)
        end = time.monotonic() + STOP_TIMEOUT
        while self._our_pids() and time.monotonic() < end:
            time.sleep(0.1)
        for left in self._our_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(left, signal.SIGKILL)
        for ns in reversed(self._netns_made):
            for leftover in _ns_pids(ns):
                # only processes this fixture's tests started can live in our namespaces
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _ip("netns", "del", ns)
        self._netns_made.clear()
        for etc in self._etc_made:
            shutil.rmtree(etc, ignore_errors=True)
        self._etc_made.clear()
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.samba_pid = None

    # ----------------------------------------------------------------- member
    def _start_member(self, deadline: float) -> None:
        """Join ``fs1`` (smbd + winbindd, security = ads) to the domain and start it."""
        m = self.member_dir
        for sub in ("etc", "private", "lock", "state", "cache", "run/ncalrpc", "run/winbindd", "log",
                    "share"):
            (m / sub).mkdir(parents=True, exist_ok=True)
        m.chmod(0o755)
        (m / "share").chmod(0o1777)
        (m / "private").chmod(0o700)
        (m / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        (m / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        self.member_conf.write_text(
            "[global]\n"
            "  security = ads\n"
            f"  realm = {REALM}\n"
            f"  workgroup = {DOMAIN}\n"
            f"  netbios name = {MEMBER_NAME.upper()}\n"
            f"  interfaces = {MEMBER_IP}\n"
            "  bind interfaces only = yes\n"
            "  disable netbios = yes\n"
            "  kerberos method = secrets and keytab\n"
            f"  dedicated keytab file = {m / 'private' / 'krb5.keytab'}\n"
            "  idmap config * : backend = tdb\n"
            "  idmap config * : range = 3000-7999\n"
            f"  idmap config {DOMAIN} : backend = rid\n"
            f"  idmap config {DOMAIN} : range = 10000-999999\n"
            f"  private dir = {m / 'private'}\n"
            f"  lock directory = {m / 'lock'}\n"
            f"  state directory = {m / 'state'}\n"
            f"  cache directory = {m / 'cache'}\n"
            f"  pid directory = {m / 'run'}\n"
            f"  ncalrpc dir = {m / 'run' / 'ncalrpc'}\n"
            f"  winbindd socket directory = {m / 'run' / 'winbindd'}\n"
            f"  log file = {m / 'log' / 'log.%m'}\n"
            "  log level = 1\n"
            "  max log size = 0\n"
            "  load printers = no\n"
            "  printing = bsd\n"
            "  printcap name = /dev/null\n"
            "  disable spoolss = yes\n"
            "  usershare max shares = 0\n"
            "  template shell = /bin/false\n"
            f"  template homedir = {m / 'share'}\n"
            "[share]\n"
            f"  path = {m / 'share'}\n"
            "  read only = no\n"
        )
        self.attach(NS_MEMBER, MEMBER_IP, "smbskrb-v2", "smbskrb-v3")
        self._write_etc(NS_MEMBER)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5") and k != "LD_PRELOAD"}
        join = subprocess.run(
            ["ip", "netns", "exec", NS_MEMBER, "net", "ads", "join", "-s", str(self.member_conf),
             "-U", f"{ADMINISTRATOR.name}%{ADMINISTRATOR.password}", "--no-dns-updates"],
            capture_output=True, text=True, env=env, timeout=60, check=False)
        (m / "log" / "join.log").write_text(join.stdout + join.stderr)
        if join.returncode != 0:
            raise SambaADError(f"net ads join failed: {(join.stdout + join.stderr)[-800:]}")
        self.samba_tool("dns", "add", DC_IP, DNS_DOMAIN, MEMBER_NAME, "A", MEMBER_IP,
                        "-U", f"{ADMINISTRATOR.name}%{ADMINISTRATOR.password}", in_namespace=True)
        for daemon in ("winbindd", "smbd"):
            with open(m / "log" / f"{daemon}.out", "wb") as log:
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", NS_MEMBER, _which(daemon) or daemon, "-s", str(self.member_conf),
                     "-F", "--no-process-group"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self.daemon_env(m), start_new_session=True)
            self.member_pids.append(proc.pid)
        smbd = self.member_pids[-1]
        while time.monotonic() < deadline:
            if not all(_alive(p) for p in self.member_pids):
                raise SambaADError(f"member daemons exited: {(m / 'log' / 'smbd.out').read_text()[-800:]}")
            if 445 in _listening_ports(smbd) and self._member_admins_ready():
                return
            time.sleep(0.2)
        raise SambaADError("the member server did not get ready in time")

    def _member_admins_ready(self) -> bool:
        """winbindd answers and maps the domain's users (Domain Admins go into
        BUILTIN\\Administrators on the member by themselves)."""
        result = subprocess.run(
            ["ip", "netns", "exec", NS_MEMBER, "wbinfo", "-n", f"{DOMAIN}\\{ALICE.name}"],
            capture_output=True, text=True, env=self.daemon_env(self.member_dir), timeout=15, check=False)
        return result.returncode == 0

    # ----------------------------------------------------------------- client
    def client_run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        input_text: str | None = None,
        timeout: float = 60,
        wrapper: Sequence[str] = (),
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the client namespace (``wrapper`` e.g. faketime goes inside).

        The environment is ours minus Kerberos/Samba variables, plus ``env``. Secrets
        go through ``input_text`` (stdin) or ``env``, never argv.
        """
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("KRB5", "NSS_WRAPPER", "SMBSESSIONS_")) and k != "LD_PRELOAD"}
        base.update(env or {})
        return subprocess.run(["ip", "netns", "exec", NS_CLIENT, *wrapper, *argv], input=input_text,
                              capture_output=True, text=True, env=base, timeout=timeout, check=False,
                              cwd=cwd)

    def kinit(self, account: DomainAccount, ccache: str, *, lifetime: str | None = None) -> None:
        """``kinit`` in the client namespace into ``ccache`` (the password on stdin)."""
        argv = ["kinit"]
        if lifetime:
            argv += ["-l", lifetime]
        result = self.client_run([*argv, account.principal], input_text=account.password + "\n",
                                 env={"KRB5CCNAME": ccache}, timeout=30)
        if result.returncode != 0:
            raise SambaADError(f"kinit {account.principal} failed: {result.stderr.strip()}")

    def as_req_count(self, account: DomainAccount) -> int:
        """Pre-authenticated AS-REQs the KDC logged for ``account`` (auth_audit:3 lines)."""
        count = 0
        needle = f"\\[{account.name.lower()}@"
        for path in (self.w / "log").glob("log.*"):
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    if "Auth: [Kerberos KDC" in line and needle in line.lower():
                        count += 1
        return count
