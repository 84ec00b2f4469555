"""``python -m smbsessions``: the same command line as the ``smbsessions`` script."""

from __future__ import annotations

from .cli import run

if __name__ == "__main__":
    run()
