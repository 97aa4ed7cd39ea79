"""The `schwab-stream` command. Subcommands load lazily so `run` never pays for the simulator.

Each command is its own module and imports no other command module: what they share is in
`common` (errors and exit codes, logging of the one-shot commands, `--redis-url`) and `formatting`
(how events and numbers are shown); the demo's rich view is `demo_view`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from schwab_stream import __version__

#: command name -> "module:attribute" of its click command.
COMMANDS: dict[str, str] = {
    "login": "schwab_stream.cli.login:login",
    "token": "schwab_stream.cli.token:token",
    "run": "schwab_stream.cli.run:run",
    "sim": "schwab_stream.cli.sim:sim",
    "demo": "schwab_stream.cli.demo:demo",
    "tail": "schwab_stream.cli.tail:tail",
    "subscribe": "schwab_stream.cli.subscriptions:subscribe",
    "unsubscribe": "schwab_stream.cli.subscriptions:unsubscribe",
    "subscriptions": "schwab_stream.cli.subscriptions:subscriptions",
    "backfill": "schwab_stream.cli.backfill:backfill",
    "archive": "schwab_stream.cli.archive:archive",
}


def _available() -> list[str]:
    names = []
    for name, target in COMMANDS.items():
        module = target.partition(":")[0]
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return _available()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or cmd_name not in _available():
            return None
        module_name, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="schwab-stream")
def main() -> None:
    """Stream a Charles Schwab account's market data into Redis Streams, reliably."""
