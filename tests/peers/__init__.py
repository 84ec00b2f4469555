"""Test peers started by the tests themselves: Samba (smbd, the AD DC, python3-samba), PostgreSQL,
our own server, and session holders. Imported by tests/interop and bench/ (``from tests.peers.samba import ...``)."""
