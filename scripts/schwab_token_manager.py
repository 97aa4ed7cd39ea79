#!/usr/bin/env python3
"""Token chores for people used to a token-manager script; a thin wrapper over the CLI.

schwab_token_manager.py login [--manual]      = schwab-stream login
schwab_token_manager.py status [--json]       = schwab-stream token status
schwab_token_manager.py refresh [--force]     = schwab-stream token refresh
schwab_token_manager.py import PATH           = schwab-stream token import PATH
"""

from __future__ import annotations

import sys

from schwab_stream.cli import main

if __name__ == "__main__":
    args = sys.argv[1:] or ["--help"]
    if args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    main(args=args if args[0] == "login" else ["token", *args], prog_name="schwab_token_manager.py")
