"""``smbsessions sweep``: enumerate sessions on many hosts, one record per host.

One module per concern, in the order the data flows:

* ``targets``: target parsing, lazy expansion, de-duplication (pure);
* ``statuses``: the status of a host's record, declared once;
* ``records``: one host's record, its JSON and CSV shapes, exception -> status;
* ``runner``: probe one host; a thread pool with a watchdog per host;
* ``pool``: worker processes, dispatch, log forwarding (``run_sweep``);
* ``logon_guard``: stop logging on after refusals in a row (account lockout);
* ``resume``: output files read back (``--resume``, whole-file summary);
* ``display``: the output writers (JSON Lines, CSV, table) and the progress line;
* ``cli``: the ``sweep`` command (arguments, output file, summary).

This package's ``__init__`` imports nothing, so ``smbsessions sweep --help`` and
the client's use of ``logon_guard`` load no more than they need.
"""
