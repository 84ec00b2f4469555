"""The client's enumeration policy, pure: which pages to ask for and what they mean.

``SessionClient`` moves the bytes (``fetch_page``), keeps the deadlines and the
byte budget of the reassembly, and converts entries to ``Session``; everything
decided about the answers lives here, over a ``fetch_page(level, resume_handle)
-> EnumResponse`` callable, so it is tested with plain values:

* No level requested: the richest level the server allows answers (502, 10,
  2, 1, 0, moving on after ERROR_INVALID_LEVEL or ERROR_ACCESS_DENIED); every
  level tried before is kept as ``(level, status)`` in ``attempts``.
* Servers that ignore ClientName/UserName (Samba): the qualifiers are applied
  here, including NERR_ClientNameNotFound / NERR_UserNotFound (``rules``).
  Level 0 carries no user name: a level that does tells which clients the user
  has sessions from.
* Paging: loop on ERROR_MORE_DATA with the resume handle; a handle that does
  not advance or a page that brings nothing is a protocol error, never a loop;
  the entries of every page together are bounded (``max_entries``), and so is
  the number of pages.

``fetch_page`` is called with resume handle 0 for the first page of each level
tried, and with the server's last handle for every later page.

``Session`` and ``Enumeration`` are what ``SessionClient.enum`` hands out
(``smbsessions.client`` exports them too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .levels import FALLBACK_ORDER, SessionInfo, check_level
from .messages import EnumResponse
from .rules import not_found_status, session_matches
from .status import NetApiError, NetApiStatus, ProtocolError

FetchPage = Callable[[int, int], EnumResponse]
"""``fetch_page(level, resume_handle)``: one NetrSessionEnum call, as the server answered it."""

# A server may not make us page forever or buffer without bound.
MAX_PAGES = 100_000
MAX_ENTRIES = 1_000_000
"""Default entry budget of one enumeration (every page together)."""
FALLBACK_STATUSES = (NetApiStatus.ERROR_INVALID_LEVEL, NetApiStatus.ERROR_ACCESS_DENIED)
"""A level refused with one of these makes an unspecified-level enumeration try the next."""
NOT_FOUND_STATUSES = (NetApiStatus.NERR_UserNotFound, NetApiStatus.NERR_ClientNameNotFound)


@dataclass(frozen=True, slots=True)
class Session:
    """One session as enumerated: the level's fields, with cname normalised."""

    info: SessionInfo
    level: int
    raw_client_name: str | None
    own_session: bool = False
    """True for the session this client enumerates through: from our address, as our
    account, and no older than our connection (others like it, opened by the same
    account from this machine at the same moment, cannot be told apart)."""

    @property
    def client_name(self) -> str | None:
        return self.info.cname

    @property
    def user_name(self) -> str | None:
        return self.info.username

    def to_dict(self) -> dict[str, Any]:
        """pywin32 keys of the level, plus ``client_name_raw`` and ``level``."""
        record = self.info.to_win32(self.level)
        record["client_name_raw"] = self.raw_client_name
        record["level"] = self.level
        record["own_session"] = self.own_session
        return record


class Enumeration:
    """The answer to ``SessionClient.enum``: iterate it (once) for every session, page by page.

    ``level`` is the level that answered; ``attempts`` lists ``(level, status)``
    of every level tried before it; ``filtered_locally`` is true when the server
    ignored the qualifiers and they were applied here; ``total_entries_hint`` is
    the server's TotalEntries from the first page. Iteration raises
    (``NetApiError``, ``ProtocolError``, transport errors) if a later page fails:
    a partial result is never presented as complete.
    """

    def __init__(
        self,
        level: int,
        attempts: list[tuple[int, int]],
        total_entries_hint: int,
        pages: Iterator[list[Session]] | Iterator[Session],
        filtered_locally: bool = False,
    ) -> None:
        self.level = level
        self.attempts = attempts
        self.total_entries_hint = total_entries_hint
        self.filtered_locally = filtered_locally
        self._pages = pages
        self._consumed = False
        self._count: int | None = None

    def __iter__(self) -> Iterator[Session]:
        if self._consumed:
            raise RuntimeError(
                "an Enumeration streams its sessions and can be iterated only once; "
                "call list() on it to keep them"
            )
        self._consumed = True
        count = 0
        for item in self._pages:
            if isinstance(item, Session):
                count += 1
                yield item
            else:
                count += len(item)
                yield from item
        self._count = count

    def __len__(self) -> int:
        """How many sessions the iteration yielded (only once it is complete)."""
        if self._count is None:
            raise TypeError("len() of an Enumeration is known once it has been iterated to the end; "
                            "call list() on it")
        return self._count

    def __repr__(self) -> str:
        return (f"Enumeration(level={self.level}, attempts={self.attempts}, "
                f"total_entries_hint={self.total_entries_hint}, filtered_locally={self.filtered_locally})")


@dataclass(slots=True)
class Plan:
    """What one enumeration found: the level that answered and its entries.

    ``pages`` yields the entries page by page (later pages are fetched as it is
    iterated, and it raises if one fails); for a qualified enumeration the pages
    were collected already (``collected``: one list, already filtered).
    """

    level: int
    attempts: list[tuple[int, int]]
    total_entries_hint: int
    pages: Iterator[list[SessionInfo]]
    filtered_locally: bool = False
    collected: bool = False


def refusal(status: int, attempts: list[tuple[int, int]], note: str = "") -> NetApiError:
    """The ``NetApiError`` for ``status``, naming every level tried when there were several."""
    tried = ", ".join(f"level {lvl}: {NetApiError(st).name}" for lvl, st in attempts)
    detail = " ".join(part for part in (note, f"[{tried}]" if len(attempts) > 1 else "") if part)
    return NetApiError(status, detail or None, attempts)


def plan_enumeration(
    fetch_page: FetchPage,
    level: int | None,
    client: str | None = None,
    user: str | None = None,
    *,
    max_entries: int = MAX_ENTRIES,
    max_pages: int = MAX_PAGES,
) -> Plan:
    """Every session across every page, at ``level`` (None: the richest the server allows).

    Raises ``NetApiError`` for a refusal (``.attempts`` lists the levels tried),
    including NERR_ClientNameNotFound / NERR_UserNotFound when qualifiers match
    nothing, even on servers that ignore qualifiers. ``client`` and ``user`` are
    the qualifiers as the caller gave them (``rules.session_matches`` canonicalises).
    """
    if level is not None:
        check_level(level)
    levels = FALLBACK_ORDER if level is None else (level,)
    attempts: list[tuple[int, int]] = []
    for candidate in levels:
        first = fetch_page(candidate, 0)
        if first.status in FALLBACK_STATUSES and level is None:
            attempts.append((candidate, first.status))
            continue
        if first.status not in (NetApiStatus.NERR_Success, NetApiStatus.ERROR_MORE_DATA):
            raise refusal(first.status, [*attempts, (candidate, first.status)])
        hint = first.total_entries
        pages = pages_from(fetch_page, candidate, first, max_entries=max_entries, max_pages=max_pages)
        del first
        if not (client or user):
            return Plan(candidate, attempts, hint, pages)
        return _qualified(fetch_page, candidate, attempts, hint, pages, client, user, max_entries, max_pages)
    denied = any(status == NetApiStatus.ERROR_ACCESS_DENIED for _, status in attempts)
    status = NetApiStatus.ERROR_ACCESS_DENIED if denied else NetApiStatus.ERROR_INVALID_LEVEL
    raise refusal(status, attempts)


def _qualified(
    fetch_page: FetchPage,
    level: int,
    attempts: list[tuple[int, int]],
    hint: int,
    pages: Iterator[list[SessionInfo]],
    client: str | None,
    user: str | None,
    max_entries: int,
    max_pages: int,
) -> Plan:
    # Qualified answers are small and must be complete before we can say
    # "not found", so they are collected here.
    entries = [info for page in pages for info in page]
    if user and level == 0:
        matching = match_level0(fetch_page, entries, client, user,
                                max_entries=max_entries, max_pages=max_pages)
    else:
        matching = [info for info in entries if session_matches(info, client, user)]
    if not matching:
        status = not_found_status(entries, client)
        raise refusal(status, [*attempts, (level, status)], "(no session matched; checked locally)")
    return Plan(level, attempts, hint, iter([matching]), filtered_locally=len(matching) != len(entries),
                collected=True)


def match_level0(
    fetch_page: FetchPage,
    entries: list[SessionInfo],
    client: str | None,
    user: str,
    *,
    max_entries: int = MAX_ENTRIES,
    max_pages: int = MAX_PAGES,
) -> list[SessionInfo]:
    """Level-0 entries passing both qualifiers, although level 0 carries no user name.

    A level that names users tells which clients ``user`` has sessions from.
    If the server allows no such level, the user qualifier cannot be checked
    here and the server's own filtering is trusted (only ``client`` is applied).
    """
    candidates = [info for info in entries if session_matches(info, client, None)]
    for richer in FALLBACK_ORDER:
        if richer == 0:
            continue
        try:
            plan = plan_enumeration(fetch_page, richer, client, user,
                                    max_entries=max_entries, max_pages=max_pages)
        except NetApiError as exc:
            if exc.status in NOT_FOUND_STATUSES:
                return []
            if exc.status in FALLBACK_STATUSES:
                continue
            raise
        names = [info.cname for page in plan.pages for info in page if info.cname]
        return [info for info in candidates if any(session_matches(info, name, None) for name in names)]
    return candidates


def pages_from(
    fetch_page: FetchPage,
    level: int,
    first: EnumResponse,
    *,
    max_entries: int = MAX_ENTRIES,
    max_pages: int = MAX_PAGES,
) -> Iterator[list[SessionInfo]]:
    """The entries of ``first`` and of every later page, one list per page.

    Raises ``ProtocolError`` for a page without a container, a resume handle
    that does not advance, an ERROR_MORE_DATA page with no entries, more than
    ``max_entries`` entries or ``max_pages`` pages in all; ``NetApiError`` when
    a later page is refused (a partial result is never presented as complete).
    """
    # A generator function called here, so that the first page is checked lazily
    # like the rest and no frame keeps a page alive once it has been handed out.
    return _pages(fetch_page, level, first, max_entries, max_pages)


def _pages(
    fetch_page: FetchPage, level: int, first: EnumResponse, max_entries: int, max_pages: int
) -> Iterator[list[SessionInfo]]:
    response: EnumResponse | None = first
    del first
    sent_handle = 0
    entries = 0
    for _ in range(max_pages):
        assert response is not None
        page = response.entries
        if page is None:
            raise ProtocolError("the server answered without a session container")
        count = len(page)
        entries += count
        if entries > max_entries:
            raise ProtocolError(
                f"the server sent more than {max_entries:,} sessions: stopping "
                "(raise the entry budget if that many are real)"
            )
        status, handle = response.status, response.resume_handle
        response = None
        yield page
        del page
        if status == NetApiStatus.NERR_Success:
            return
        if status != NetApiStatus.ERROR_MORE_DATA:
            raise refusal(status, [(level, status)], "(while paging)")
        if handle is None or handle <= sent_handle or not count:
            raise ProtocolError(
                f"the server's resume handle does not advance ({sent_handle} -> {handle}"
                f" with {count} entries): stopping rather than looping"
            )
        sent_handle = handle
        response = fetch_page(level, handle)
    raise ProtocolError(f"more than {max_pages} pages: stopping")
