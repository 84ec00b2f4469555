"""LogonGuard: one logon at a time until one is accepted, stop after N refusals in a row."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from smbsessions.status import AuthenticationError, HostTimeoutError, NtStatus, TransportError
from smbsessions.sweep.logon_guard import LogonGuard, LogonNotAttempted
from smbsessions.sweep.records import classify


def refuse(guard: LogonGuard, status: int = NtStatus.STATUS_LOGON_FAILURE) -> None:
    with pytest.raises(AuthenticationError), guard.logon("h", None):
        raise AuthenticationError("refused", ntstatus=status)


def accept(guard: LogonGuard) -> None:
    with guard.logon("h", None):
        pass


def test_three_refusals_in_a_row_stop_every_later_logon() -> None:
    guard = LogonGuard(3)
    refuse(guard)
    refuse(guard, NtStatus.STATUS_ACCOUNT_LOCKED_OUT)
    assert not guard.stopped and guard.refusals == 2
    refuse(guard, NtStatus.STATUS_PASSWORD_EXPIRED)
    assert guard.stopped and guard.last_refusal == "STATUS_PASSWORD_EXPIRED"
    with pytest.raises(LogonNotAttempted, match="3 hosts in a row refused it") as info, guard.logon("h2", None):
        pytest.fail("the body must not run once stopped")
    assert classify(info.value).status == "not-attempted"


def test_an_accepted_logon_resets_the_count_and_other_failures_do_not_count() -> None:
    guard = LogonGuard(2)
    refuse(guard)
    accept(guard)
    assert guard.verified and guard.refusals == 0
    with pytest.raises(TransportError), guard.logon("h", None):
        raise TransportError("connection lost", ntstatus=NtStatus.STATUS_PIPE_BROKEN)
    refuse(guard)
    assert not guard.stopped
    refuse(guard)
    assert guard.stopped


@pytest.mark.parametrize("shared", [False, True])
def test_logons_are_serial_until_one_is_accepted(shared: bool) -> None:
    context = multiprocessing.get_context("fork") if shared else None
    guard = LogonGuard(3, context)
    inside = 0
    most = 0
    lock = threading.Lock()
    errors: list[BaseException] = []

    def attempt() -> None:
        nonlocal inside, most
        try:
            with guard.logon("h", time.monotonic() + 10):
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.01)
                with lock:
                    inside -= 1
                raise AuthenticationError("refused", ntstatus=NtStatus.STATUS_LOGON_FAILURE)
        except (AuthenticationError, LogonNotAttempted) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 1
    assert sum(not isinstance(e, LogonNotAttempted) for e in errors) == 3
    assert sum(isinstance(e, LogonNotAttempted) for e in errors) == 9


def test_waiting_behind_a_slow_logon_is_a_timeout_that_says_so() -> None:
    guard = LogonGuard(3)
    entered = threading.Event()
    release = threading.Event()

    def slow() -> None:
        with guard.logon("slow", None):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        assert entered.wait(10)
        with pytest.raises(HostTimeoutError, match="waiting for another host's logon"), \
                guard.logon("h2", time.monotonic() + 0.2):
            pytest.fail("must not get in while the first logon is unresolved")
    finally:
        release.set()
        thread.join(10)
    assert guard.verified
