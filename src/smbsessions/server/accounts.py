"""Server accounts: who may log on, and who counts as an administrator."""

from __future__ import annotations

from dataclasses import dataclass, field

from smbsessions.ntlm import nt_hash as _nt_hash


@dataclass(frozen=True)
class Account:
    """One logon the server accepts (NTLMv2 only: that is what impacket checks)."""

    user: str
    password: str = field(repr=False)  # never printed
    admin: bool = False

    def __post_init__(self) -> None:
        if not self.user or any(c in self.user for c in "\\/@:"):
            raise ValueError(f"invalid account name {self.user!r}")

    def nt_hash(self) -> bytes:
        """NTOWFv1 (MD4 of the UTF-16LE password): what NTLMv2 verification needs."""
        return _nt_hash(self.password)


def parse_account(spec: str) -> Account:
    """``USER:PASSWORD[:admin]`` (the CLI form). The password may contain ``:``."""
    user, sep, rest = spec.partition(":")
    if not sep:
        raise ValueError("account must look like USER:PASSWORD[:admin]")
    admin = False
    if rest.endswith(":admin"):
        rest, admin = rest[: -len(":admin")], True
    return Account(user, rest, admin)
