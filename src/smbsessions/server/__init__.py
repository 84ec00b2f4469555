"""``smbsessions serve``: an SMB server whose NetrSessionEnum shows its real sessions.

``engine.build_server`` is the entry point; ``types`` is the contract with the
srvsvc endpoint.
"""
