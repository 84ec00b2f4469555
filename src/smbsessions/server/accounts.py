"""Server accounts: who may log on, and who counts as an administrator.

Only the NT hash is kept (NTLMv2 needs nothing else): the plain password of
``USER:PASSWORD`` is hashed when the account is parsed and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smbsessions.ntlm import nt_hash


@dataclass(frozen=True)
class Account:
    """One logon the server accepts (NTLMv2 against ``nt_hash``)."""

    user: str
    nt_hash: bytes = field(repr=False)  # never printed
    admin: bool = False

    def __post_init__(self) -> None:
        if not self.user or any(c in self.user for c in "\\/@:") or not self.user.isprintable():
            raise ValueError(f"invalid account name {self.user!r}")
        if len(self.nt_hash) != 16:
            raise ValueError("an NT hash is 16 bytes")

    @classmethod
    def with_password(cls, user: str, password: str, admin: bool = False) -> Account:
        return cls(user, nt_hash(password), admin)


def parse_account(spec: str) -> Account:
    """``USER:PASSWORD[:admin]`` (the CLI form). The password may contain ``:``."""
    user, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError("account must look like USER:PASSWORD[:admin]")
    admin = False
    if rest.endswith(":admin"):
        rest, admin = rest[: -len(":admin")], True
    return Account.with_password(user, rest, admin)
