"""``smbsessions sweep`` against real peers on loopback.

One private smbd (ports 4500-4505) listens on the wildcard address, so every
127.0.10.x address reaches it: many distinct hosts from one server (Samba's
``interfaces`` only accepts addresses configured on an interface, and these
are not). ``hosts allow`` keeps it to loopback clients. Beside it, Python
listeners play the hosts that misbehave: silent after accepting, trickling
bytes, SMB1-only. A port with no listener plays the host that refuses.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from smbsessions.cli import main

from ..peers.holders import SessionHolder
from ..peers.samba import ALICE, BOB, SambaError, SambaServer, port_is_free, unavailable_reason

SAMBA_PORTS = range(4500, 4506)
FAKE_PORTS = range(4510, 4516)
CLOSED_PORTS = range(4516, 4520)
SAMBA_HOSTS = [f"127.0.10.{i}" for i in range(1, 21)]
RUN_TIMEOUT = 60


# --------------------------------------------------------------------------- peers


@pytest.fixture(scope="module")
def samba_many() -> Iterator[SambaServer]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"Samba interop peer unavailable: {reason}")
    for port in SAMBA_PORTS:
        if not port_is_free(port, ("0.0.0.0",)):
            continue
        server = SambaServer(
            port,
            bind_addrs=("127.0.0.1",),
            extra_global=("bind interfaces only = no", "hosts allow = 127.0.0.0/8 ::1"),
        )
        try:
            server.start()
            server.warm_up()
        except SambaError:
            server.stop()
            raise
        try:
            # A session of bob's from another address, so the hosts have a session
            # besides the sweep's own (which is listed, marked, and not counted).
            with SessionHolder(server.host, server.port, 1, credentials=[(BOB.name, BOB.password)],
                               source_ips=["127.0.0.2"]):
                yield server
        finally:
            server.stop()
        return
    pytest.fail(f"no free port for smbd in {SAMBA_PORTS}")


def _smb1_negotiate_reply() -> bytes:
    body = b"\xffSMB\x72" + bytes(27) + b"\x00\x00\x00"
    return struct.pack(">I", len(body)) + body


class FakeHosts:
    """Listeners on loopback that accept and then misbehave in one way each."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def listen(self, address: str, behaviour: str) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, self.port))
        sock.listen(64)
        sock.settimeout(0.2)
        self._sockets.append(sock)
        threading.Thread(target=self._accept, args=(sock, behaviour), daemon=True).start()
        return f"{address}:{self.port}"

    def _accept(self, sock: socket.socket, behaviour: str) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._sockets.append(conn)
            if behaviour == "trickle":
                threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()
            elif behaviour == "smb1":
                with contextlib.suppress(OSError):
                    conn.settimeout(2)
                    conn.recv(4096)
                    conn.sendall(_smb1_negotiate_reply())
            # "silent": keep the connection open and never answer.

    def _trickle(self, conn: socket.socket) -> None:
        # A length prefix promising 4 KiB, then one byte every 0.2 s: never a whole message.
        with contextlib.suppress(OSError):
            conn.sendall(b"\x00\x00\x10\x00")
            for _ in range(300):
                if self._stop.wait(0.2):
                    return
                conn.sendall(b"\xfe")

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeHosts]:
    for port in FAKE_PORTS:
        if port_is_free(port, ("127.0.11.1",)):
            hosts = FakeHosts(port)
            try:
                yield hosts
            finally:
                hosts.close()
            return
    pytest.fail(f"no free port in {FAKE_PORTS}")


@pytest.fixture(scope="module")
def closed_port() -> int:
    for port in CLOSED_PORTS:
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.10.250", port)) != 0:
                return port
    pytest.fail(f"every port in {CLOSED_PORTS} is taken")


# --------------------------------------------------------------------------- helpers


def sweep(*argv: str) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["sweep", *argv], out, err)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, records, err.getvalue()


def by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keys = [f"{r['host']}:{r['port']}" for r in records]
    assert len(keys) == len(set(keys)), "a host was recorded twice"
    return dict(zip(keys, records, strict=True))


def samba_targets(server: SambaServer, hosts: Sequence[str] = SAMBA_HOSTS) -> list[str]:
    return [f"{host}:{server.port}" for host in hosts]


# --------------------------------------------------------------------------- tests


def test_every_status_in_one_sweep(
    samba_many: SambaServer, fakes: FakeHosts, closed_port: int, tmp_path: Path
) -> None:
    silent = fakes.listen("127.0.11.1", "silent")
    trickle = fakes.listen("127.0.11.2", "trickle")
    smb1 = fakes.listen("127.0.11.3", "smb1")
    refused = f"127.0.10.250:{closed_port}"
    targets_file = tmp_path / "targets.txt"
    targets_file.write_text(
        "# loopback lab\n"
        + "\n".join(samba_targets(samba_many))
        + f"\n{silent}\n{trickle}\n\n{smb1}  # SMB1 only\n{refused}\nnot/a/target\n"
        + f"{SAMBA_HOSTS[0]}:{samba_many.port}\n"
    )
    code, records, err = sweep(
        "-f", str(targets_file), "-U", f"{ALICE.name}%{ALICE.password}", "--timeout", "1.5",
        "--concurrency", "8",
    )
    assert code == 9
    hosts = by_key(records)
    assert len(hosts) == len(SAMBA_HOSTS) + 4
    for target in samba_targets(samba_many):
        record = hosts[target]
        assert record["status"] == "ok", record
        assert record["level"] == 1 and BOB.name in record["users"]
        assert ALICE.name not in record["users"]  # the sweep's own sessions are not counted
        assert any(s["own_session"] and s["user_name"] == ALICE.name for s in record["sessions"])
        # Sessions still being set up (ours, concurrently) are listed with an empty user.
        assert all({"client_name", "user_name"} <= set(s) for s in record["sessions"])
    assert hosts[silent]["status"] == "timeout"
    assert hosts[trickle]["status"] == "timeout"
    assert hosts[smb1]["status"] == "error" and hosts[smb1]["error"] == "UnsupportedDialect"
    assert "SMB1" in hosts[smb1]["detail"]
    assert hosts[refused]["status"] == "unreachable"
    assert f"{targets_file}:" in err and "not/a/target" in err
    assert f"{len(SAMBA_HOSTS)} of {len(SAMBA_HOSTS) + 4} hosts expose sessions to this account" in err


def test_denied_auth_failed_and_invalid_level(samba_many: SambaServer) -> None:
    targets = samba_targets(samba_many, SAMBA_HOSTS[:3])
    code, records, err = sweep(*targets, "-U", f"{BOB.name}%{BOB.password}", "--timeout", "5")
    assert code == 9 and {r["status"] for r in records} == {"denied"}
    assert records[0]["error"] == "ERROR_ACCESS_DENIED" and records[0]["code"] == 5
    assert "0 of 3 hosts expose sessions" in err

    code, records, _ = sweep(*targets, "-U", f"{ALICE.name}%wrong", "--timeout", "5")
    assert code == 6 and {r["status"] for r in records} == {"auth-failed"}
    assert records[0]["error"] == "STATUS_LOGON_FAILURE"

    code, records, _ = sweep(*targets, "-U", f"{ALICE.name}%{ALICE.password}", "--level", "502")
    assert code == 9 and {r["status"] for r in records} == {"invalid-level"}
    assert records[0]["code"] == 124


def test_a_wrong_password_is_tried_on_three_hosts_only(samba_many: SambaServer, tmp_path: Path) -> None:
    targets = samba_targets(samba_many)
    output = tmp_path / "out.jsonl"
    code, _, err = sweep(*targets, "-U", f"{ALICE.name}%wrong", "--timeout", "5", "--concurrency", "16",
                         "-o", str(output))
    records = [json.loads(line) for line in output.read_text().splitlines()]
    statuses = [r["status"] for r in records]
    assert code == 6
    assert statuses.count("auth-failed") == 3
    assert statuses.count("not-attempted") == len(SAMBA_HOSTS) - 3
    assert "every host refused the logon: check the password" in err
    assert "STATUS_LOGON_FAILURE" in err and "17 host(s) not attempted" in err

    # Fixed password: --resume retries exactly the hosts not attempted (and not the refused ones).
    code, _, err = sweep(*targets, "-U", f"{ALICE.name}%{ALICE.password}", "-o", str(output), "--resume")
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert code == 9  # the verdict covers the whole file: three hosts refused the logon
    assert f"in total ({output}): {len(SAMBA_HOSTS)} host(s)" in err
    assert [r["status"] for r in records[len(SAMBA_HOSTS):]] == ["ok"] * (len(SAMBA_HOSTS) - 3)


def test_continue_on_auth_failure_tries_every_host(samba_many: SambaServer) -> None:
    targets = samba_targets(samba_many, SAMBA_HOSTS[:6])
    code, records, err = sweep(*targets, "-U", f"{ALICE.name}%wrong", "--continue-on-auth-failure")
    assert code == 9 and [r["status"] for r in records] == ["auth-failed"] * 6
    assert "check the password" not in err


def test_user_hunt(samba_many: SambaServer) -> None:
    targets = samba_targets(samba_many, SAMBA_HOSTS[:4])
    creds = f"{ALICE.name}%{ALICE.password}"
    code, records, err = sweep(*targets, "-U", creds, "--user", "nobody-here", "--format", "jsonl")
    assert code == 0
    assert {r["status"] for r in records} == {"ok-empty"}
    assert "NERR_UserNotFound" in records[0]["note"]
    assert "user 'nobody-here' found on no host" in err

    code, records, err = sweep(*targets, "-U", creds, "--user", BOB.name)
    assert code == 0 and {r["status"] for r in records} == {"ok"}
    assert all(r["users"] == [BOB.name] for r in records)
    assert f"user '{BOB.name}' found on 4 host(s)" in err
    for target in targets:
        assert target in err


def test_table_and_csv_formats(samba_many: SambaServer, closed_port: int) -> None:
    targets = [*samba_targets(samba_many, SAMBA_HOSTS[:2]), f"127.0.10.250:{closed_port}"]
    creds = f"{ALICE.name}%{ALICE.password}"
    out, err = io.StringIO(), io.StringIO()
    assert main(["sweep", *targets, "-U", creds, "--format", "table"], out, err) == 9
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["HOST", "STATUS"] and len(lines) == 4
    assert any("unreachable" in line for line in lines)
    out = io.StringIO()
    assert main(["sweep", *targets, "-U", creds, "--format", "csv"], out, io.StringIO()) == 9
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    # One row per session (ours and bob's at least) per Samba host, one for the closed port.
    assert {r["status"] for r in rows} == {"ok", "unreachable"}
    assert {r["user_name"] for r in rows if r["status"] == "ok"} >= {ALICE.name, BOB.name}
    assert len([r for r in rows if r["status"] == "unreachable"]) == 1


def test_interrupt_then_resume_loses_and_repeats_nothing(
    samba_many: SambaServer, fakes: FakeHosts, tmp_path: Path
) -> None:
    silent = [fakes.listen(f"127.0.11.{i}", "silent") for i in range(10, 22)]
    real = samba_targets(samba_many, [f"127.0.10.{i}" for i in range(30, 70)])
    targets = [t for pair in zip(real[::3], real[1::3], real[2::3], silent, strict=False) for t in pair]
    targets += [t for t in real + silent if t not in targets]
    assert len(targets) == len(set(targets)) == len(real) + len(silent)
    targets_file = tmp_path / "targets.txt"
    targets_file.write_text("\n".join(targets) + "\n")
    output = tmp_path / "sweep.jsonl"
    argv = [
        sys.executable, "-c", "import sys; from smbsessions.cli import main; sys.exit(main())",
        "sweep", "-f", str(targets_file), "-U", ALICE.name, "--timeout", "2", "--concurrency", "4",
        "-o", str(output),
    ]
    env = dict(os.environ, SMBSESSIONS_PASSWORD=ALICE.password)
    env.pop("LD_PRELOAD", None)
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < end and first.poll() is None:
            if output.exists() and output.read_text().count("\n") >= 12:
                break
            time.sleep(0.05)
        assert first.poll() is None, "the sweep ended before it could be interrupted"
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=RUN_TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert first.returncode == 130, err
    assert "interrupted after" in err and "--resume" in err
    partial = [json.loads(line) for line in output.read_text().splitlines()]
    assert 12 <= len(partial) < len(targets)
    by_key(partial)

    second = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert second.returncode == 9, second.stderr  # the silent hosts time out
    assert f"{len(partial)} host(s) already in" in second.stderr
    everything = by_key([json.loads(line) for line in output.read_text().splitlines()])
    assert sorted(everything) == sorted(targets)
    assert {everything[t]["status"] for t in silent} == {"timeout"}
    assert {everything[t]["status"] for t in real} == {"ok"}

    third = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    # Nothing left to do; the verdict is the whole file's: the silent hosts timed out.
    assert third.returncode == 9 and f"{len(targets)} host(s) already in" in third.stderr
    assert "this run: swept 0 of 0 host(s)" in third.stderr
    assert f"{len(real)} of {len(targets)} hosts expose sessions" in third.stderr
    assert len(output.read_text().splitlines()) == len(targets)


def test_deadline_bounds_the_sweep(samba_many: SambaServer, fakes: FakeHosts) -> None:
    silent = [fakes.listen(f"127.0.11.{i}", "silent") for i in range(30, 34)]
    real = samba_targets(samba_many, [f"127.0.10.{i}" for i in range(100, 110)])
    code, records, err = sweep(
        *silent, *real, "-U", f"{ALICE.name}%{ALICE.password}", "--timeout", "30", "--concurrency", "4",
        "--deadline", "1.5",
    )
    assert code == 9
    hosts = by_key(records)
    assert len(hosts) == len(silent) + len(real)
    assert {hosts[t]["status"] for t in silent} == {"timeout"}
    assert all("deadline" in hosts[t]["detail"] for t in silent)
    assert {hosts[t]["status"] for t in real} == {"skipped"}
    assert "skipped 10" in err


def test_samba_and_our_server_in_one_sweep(samba_many: SambaServer, tmp_path: Path) -> None:
    """Both real servers appear in one sweep: Samba answers level 1, ours level 502."""
    from smbsessions.levels import SessionInfo

    from ..peers.ourserver import running_server

    decoys = [SessionInfo(f"\\\\10.1.0.{i}", f"decoy{i}", 0, 60, 5, 0, "SMB 3.1.1", "tcp") for i in range(3)]
    with running_server(tmp_path, bind="127.0.12.1", decoys=decoys) as ours:
        ours_target = f"127.0.12.1:{ours.port}"
        code, records, err = sweep(
            *samba_targets(samba_many, SAMBA_HOSTS[:3]), ours_target,
            "-U", f"{ALICE.name}%{ALICE.password}", "--user", "decoy1", "--timeout", "5",
        )
    hosts = by_key(records)
    assert code == 0, err
    mine = hosts[ours_target]
    assert (mine["status"], mine["level"]) == ("ok", 502)
    assert [s["user_name"] for s in mine["sessions"]] == ["decoy1"]
    assert mine["sessions"][0]["client_name"] == "\\\\10.1.0.1"
    for target in samba_targets(samba_many, SAMBA_HOSTS[:3]):
        assert (hosts[target]["status"], hosts[target]["level"]) == ("ok-empty", 1)
    assert ours_target in err  # the summary says where the hunted user was found
