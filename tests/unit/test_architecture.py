"""The shape the code promises (docs/architecture.md): no import cycle between the package's
modules, no source file past 800 lines, sans-I/O cores that import no I/O library, and a
stream side that does not pull in redis."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "schwab_stream"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports, anywhere in it (a deferred import inside a function
    still ties the two modules together), TYPE_CHECKING blocks excluded."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def test_no_import_cycle_between_the_packages_modules() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[list[str]] = []

    def walk(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append([*visiting[visiting.index(name) :], name])
            return
        visiting.append(name)
        for dep in sorted(graph[name]):
            walk(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        walk(name)
    assert cycles == []


def test_no_source_file_is_longer_than_800_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 800
    }
    assert long == {}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("schwab_stream.publish.core", ("asyncio", "redis", "hiredis")),
        ("schwab_stream.publish.wire", ("asyncio", "redis")),
        ("schwab_stream.stream.protocol", ("asyncio", "websockets", "redis")),
        ("schwab_stream.stream.normalize", ("asyncio", "websockets", "redis")),
        ("schwab_stream.stream.client", ("redis",)),
        (
            "schwab_stream.stream.state",
            ("websockets", "httpx", "redis", "msgspec", "aiohttp", "prometheus_client"),
        ),
        ("schwab_stream.telemetry.logging", ("prometheus_client", "aiohttp")),
        ("schwab_stream.alerts", ("schwab_stream.auth",)),
        (
            "schwab_stream.cli.run",
            ("rich", "schwab_stream.sim", "schwab_stream.cli.demo", "schwab_stream.auth"),
        ),
    ],
)
def test_a_module_loads_without_what_it_must_not_depend_on(
    module: str, forbidden: tuple[str, ...]
) -> None:
    """Imported alone in a fresh interpreter, the module pulls none of `forbidden` in."""
    assert _loaded_by(module, forbidden) == []


def test_the_load_check_sees_what_a_module_does_load() -> None:
    assert _loaded_by("schwab_stream.stream.client", ("websockets", "redis")) == ["websockets"]


def _loaded_by(module: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` (modules, with their submodules) importing `module` loads."""
    code = (
        f"import sys, {module}\n"
        f"names = {names!r}\n"
        "print(' '.join(n for n in names if any(m == n or m.startswith(n + '.') "
        "for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()
