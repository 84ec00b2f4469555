"""Samba's own Python bindings as an independent srvsvc client.

Debian's ``python3-samba`` (``samba.dcerpc.srvsvc``) carries Samba's
PIDL-generated NDR code: a second implementation, unrelated to impacket and
to ours, that tests can compare against. It exists only for the system
interpreter (/usr/bin/python3), not for the project's venv, so each call runs
in a subprocess; arguments (the password included) go in on stdin as JSON and
the result comes back on stdout as JSON.

Results are plain dicts::

    {"werror": 0, "ntstatus": None, "error": None,
     "level": 1, "entries": [{"client": "127.0.0.2", "user": "bob", ...}],
     "entries_read": 1, "total": 1, "resume": None}

``werror`` is the NET_API_STATUS number (Samba's python raises WERRORError for
anything but 0; its number is captured). ``ntstatus`` is set when the
transport failed (e.g. the connection was cut), ``error`` for anything else.
Entry keys are Samba's IDL member names (client, user, num_open, time,
idle_time, user_flags, client_type, transport).
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
DEFAULT_TIMEOUT = 60.0

_PROBE = "import samba.dcerpc.srvsvc"

# Runs under /usr/bin/python3; kept free of anything the system python lacks.
_SCRIPT = r"""
import json, sys
from samba import WERRORError, NTSTATUSError, credentials, param
from samba.dcerpc import srvsvc

FIELDS = {
    0: ["client"],
    1: ["client", "user", "num_open", "time", "idle_time", "user_flags"],
    2: ["client", "user", "num_open", "time", "idle_time", "user_flags", "client_type"],
    10: ["client", "user", "time", "idle_time"],
    502: ["client", "user", "num_open", "time", "idle_time", "user_flags", "client_type",
          "transport"],
}

args = json.load(sys.stdin)
out = {"werror": None, "ntstatus": None, "error": None}
try:
    lp = param.LoadParm()
    if args["conf"]:
        lp.load(args["conf"])
    lp.set("smb ports", str(args["port"]))
    creds = credentials.Credentials()
    creds.guess(lp)
    if args["user"]:
        creds.set_username(args["user"])
        creds.set_password(args["password"])
        creds.set_domain(args["domain"])
    else:
        creds.set_anonymous()
    conn = srvsvc.srvsvc("ncacn_np:%s[\\pipe\\srvsvc]" % args["host"], lp, creds)
    if args["op"] == "enum":
        level = args["level"]
        ctr = srvsvc.NetSessInfoCtr()
        ctr.level = level
        ctr.ctr = getattr(srvsvc, "NetSessCtr%d" % level)()
        out["level"] = level
        ctr_out, total, resume = conn.NetSessEnum(
            args["server_unc"], args["client"], args["user_filter"], ctr,
            args["max_buffer"], args["resume"])
        entries = []
        inner = ctr_out.ctr
        if inner is not None and inner.array is not None:
            for entry in inner.array:
                entries.append({name: getattr(entry, name) for name in FIELDS[level]})
        out.update(werror=0, entries=entries, entries_read=len(entries), total=total,
                   resume=resume, reply_level=ctr_out.level)
    else:
        conn.NetSessDel(args["server_unc"], args["client"], args["user_filter"])
        out["werror"] = 0
except WERRORError as exc:
    out["werror"] = exc.args[0]
    out["error"] = str(exc.args[1]) if len(exc.args) > 1 else None
except NTSTATUSError as exc:
    out["ntstatus"] = exc.args[0]
    out["error"] = str(exc.args[1]) if len(exc.args) > 1 else None
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
json.dump(out, sys.stdout)
"""


class SambaPyError(RuntimeError):
    """The python3-samba subprocess failed to produce a result."""


def samba_py_available() -> bool:
    """True if /usr/bin/python3 can import Samba's srvsvc bindings."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    try:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-c", _PROBE], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def require_samba_py() -> None:
    """Skip the calling test if python3-samba is missing."""
    if not samba_py_available():
        pytest.skip(f"{SYSTEM_PYTHON} lacks samba.dcerpc.srvsvc (apt-get install python3-samba)")


def _run(args: dict[str, Any], timeout: float) -> dict[str, Any]:
    host = args["host"]
    if ":" in host:
        # Samba's binding strings have no IPv6 literal syntax for ncacn_np here.
        raise ValueError("samba_py supports IPv4 hosts only")
    require_samba_py()
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PASSWD")}
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-c", _SCRIPT],
        input=json.dumps(args),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SambaPyError(f"python3-samba exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise SambaPyError(f"python3-samba printed no JSON: {proc.stdout[-300:]!r}") from exc
    return result


def _common(
    host: str,
    port: int,
    user: str,
    password: str,
    conf: str | os.PathLike[str] | None,
    domain: str,
    server_unc: str | None,
) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "user": user,
        "password": password,
        "domain": domain,
        "conf": str(conf) if conf else None,
        "server_unc": server_unc,
    }


def samba_py_session_enum(
    host: str,
    port: int,
    user: str,
    password: str,
    level: int,
    client: str | None = None,
    user_filter: str | None = None,
    max_buffer: int = 0xFFFFFFFF,
    resume: int | None = None,
    *,
    conf: str | os.PathLike[str] | None = None,
    domain: str = "",
    server_unc: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """NetrSessionEnum through Samba's bindings.

    ``level`` must be one the bindings can encode (0, 1, 2, 10, 502). ``conf``
    is a client smb.conf (``SambaServer.client_conf``) so the bindings keep
    their caches out of /run/samba. ``user=""`` connects anonymously.
    """
    if level not in (0, 1, 2, 10, 502):
        raise ValueError("Samba's bindings can only encode levels 0, 1, 2, 10 and 502")
    args = _common(host, port, user, password, conf, domain, server_unc)
    args.update(
        op="enum", level=level, client=client, user_filter=user_filter, max_buffer=max_buffer, resume=resume
    )
    return _run(args, timeout)


def samba_py_session_del(
    host: str,
    port: int,
    user: str,
    password: str,
    client: str | None = None,
    user_filter: str | None = None,
    *,
    conf: str | os.PathLike[str] | None = None,
    domain: str = "",
    server_unc: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """NetrSessionDel through Samba's bindings: ``{"werror": n, ...}``.

    Deleting the caller's own session usually cuts the connection before the
    reply: expect ``ntstatus``/``error`` rather than ``werror`` then.
    """
    args = _common(host, port, user, password, conf, domain, server_unc)
    args.update(op="del", client=client, user_filter=user_filter)
    return _run(args, timeout)
