#!/usr/bin/env python3
"""Check that the token file can still be refreshed: a forced refresh, then the status.

Exits 0 when both work, 3 when a browser login is needed, 1 on any other error (cron-friendly).
A thin wrapper over `schwab-stream token refresh --force` and `schwab-stream token status`.
"""

from __future__ import annotations

import sys

from schwab_stream.cli import main


def run(args: list[str]) -> int:
    try:
        main(args=args, prog_name="schwab-stream")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit(0)
    sys.exit(run(["token", "refresh", "--force"]) or run(["token", "status"]))
