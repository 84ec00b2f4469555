"""``smbsessions serve``: an SMB 2/3 server whose NetrSessionEnum shows its real sessions.

``shell.build_server`` is the entry point; ``smb2/`` is the sans-I/O protocol
core; ``types`` is the contract with the srvsvc endpoint.
"""
