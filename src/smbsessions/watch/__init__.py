"""``smbsessions watch`` / ``history``: who was connected where, over time, in a database.

* ``diffing``: the pure tracker (polls in, logon/logoff/host-status events out);
* ``events``: the event values and their JSON / terminal forms;
* ``poll``: one round = one sweep, records turned into polls, own session recognised;
* ``pending``: writes waiting for the store (bounded memory);
* ``store``: SQLAlchemy Core schema (versioned, self-upgrading), SQLite or PostgreSQL;
* ``watcher``: the loop (rounds, store outages, retention, lag);
* ``history``: queries over the store; ``plot``: the timeline picture;
* ``metrics``: the Prometheus endpoint; ``cli``: the two commands.

Importing this package imports none of the database, metrics or plotting libraries.
"""
