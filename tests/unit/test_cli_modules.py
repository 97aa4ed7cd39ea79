"""How the CLI and the auth side are put together: no command module imports another, `run` stays
cheap (no simulator, no rich), and the expiry policy is one module that auth and alerts both use
without importing each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import schwab_stream
from schwab_stream.cli import COMMANDS

PACKAGE = Path(schwab_stream.__file__).parent
COMMAND_MODULES = {target.partition(":")[0] for target in COMMANDS.values()}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def module_path(module: str) -> Path:
    return PACKAGE.parent / (module.replace(".", "/") + ".py")


@pytest.mark.parametrize("module", sorted(COMMAND_MODULES))
def test_no_command_module_imports_another(module: str) -> None:
    others = COMMAND_MODULES - {module}
    assert imported_modules(module_path(module)) & others == set()


def test_auth_and_alerts_do_not_import_each_other() -> None:
    auth = [p for p in (PACKAGE / "auth").glob("*.py")]
    for path in auth:
        assert not any(m.startswith("schwab_stream.alerts") for m in imported_modules(path)), path
    alerts = imported_modules(PACKAGE / "alerts.py")
    # (a type-only import of TokenRecord is fine: it runs only under a type checker)
    runtime = {m for m in alerts if m.startswith("schwab_stream.auth")}
    assert runtime <= {
        "schwab_stream.auth.token_store",
        "schwab_stream.auth.token_store.TokenRecord",
    }
    # and at run time: tests/unit/test_architecture.py loads alerts alone


def test_the_expiry_policy_is_sans_io() -> None:
    allowed = {"__future__", "datetime", "typing"}
    imported = {name.split(".")[0] for name in imported_modules(PACKAGE / "expiry.py")}
    assert imported <= allowed
