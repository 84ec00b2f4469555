"""Our SMB 2/3 server core (sans-I/O): constants, messages, codec, state tables, connection."""
