#!/usr/bin/env python3
"""Start the streamer, for people used to a start script; a thin wrapper over the CLI.

start_schwab_streamer.py [--subscribe SERVICE=KEYS ...]   = schwab-stream run [...]

Settings come from the environment and .env as for `schwab-stream run`.
"""

from __future__ import annotations

import sys

from schwab_stream.cli import main

if __name__ == "__main__":
    main(args=["run", *sys.argv[1:]], prog_name="start_schwab_streamer.py")
