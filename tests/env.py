"""The environment of a `schwab-stream` subprocess in a test: the shell's, minus the developer's
own settings (SCHWAB_*, REDIS_*), plus the test's."""

from __future__ import annotations

import os


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("SCHWAB_", "REDIS_"))}
    env.update(settings)
    return env
