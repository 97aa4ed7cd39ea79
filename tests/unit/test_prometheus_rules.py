"""deploy/prometheus/alerts.yml: `promtool check rules`, `promtool test rules` (the firing and
not-firing cases of every rule, deploy/prometheus/alerts.test.yml), and what every rule must carry:
a severity, a summary saying what to do, a runbook link to a section that exists.

promtool comes from Debian's `prometheus` package: `./dev setup` unpacks it into .venv/bin (see
`prometheus_tools` in ./dev); without it these tests skip and say so."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning", "info"}


def prometheus_tool(name: str) -> str | None:
    """`name` (promtool, prometheus) from the venv's bin (where ./dev puts it), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)


def need_tool(name: str) -> str:
    path = prometheus_tool(name)
    if path is None:
        pytest.skip(
            f"{name} not found in .venv/bin or on PATH: `./dev setup` unpacks it from Debian's "
            "prometheus package, which needs apt-get (not available here, or it failed)"
        )
    return path


def rule_blocks() -> dict[str, str]:
    """Each alerting rule's text, by alert name (alerts.yml is plain block YAML)."""
    text = RULES.read_text()
    parts = re.split(r"^      - alert: ", text, flags=re.M)[1:]
    blocks = {part.split("\n", 1)[0].strip(): part for part in parts}
    assert len(blocks) == len(parts), "an alert name is used twice"
    return blocks


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a page's headings (lower case, punctuation dropped, spaces
    to hyphens)."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_promtool_check_rules() -> None:
    promtool = need_tool("promtool")
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rule_blocks())} rules found" in done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    promtool = need_tool("promtool")
    done = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    """alerts.test.yml has, for each rule, an evaluation where it fires and one where it does
    not (a rule added without its tests fails here)."""
    text = RULE_TESTS.read_text()
    cases = re.findall(
        r"alertname: (\w+)\n\s+exp_alerts:( \[\])?\n(\s+- exp_labels)?", text, flags=re.M
    )
    firing = {name for name, empty, labels in cases if labels and not empty}
    quiet = {name for name, empty, _ in cases if empty}
    names = set(rule_blocks())
    assert names - firing == set(), "never shown firing"
    assert names - quiet == set(), "never shown not firing"
    assert (firing | quiet) - names == set(), "tests of rules that do not exist"


def test_every_rule_has_a_severity_a_summary_and_a_runbook_section() -> None:
    anchors = github_anchors(RUNBOOK.read_text())
    for name, block in rule_blocks().items():
        severity = re.search(r"^\s+severity: (\w+)$", block, flags=re.M)
        assert severity and severity.group(1) in SEVERITIES, name
        assert re.search(r"^\s+summary: ", block, flags=re.M), name
        link = re.search(r"^\s+runbook_url: docs/runbook\.md#([\w-]+)$", block, flags=re.M)
        assert link, f"{name}: no runbook_url into docs/runbook.md"
        assert link.group(1) in anchors, f"{name}: docs/runbook.md has no section #{link.group(1)}"


def test_the_anchor_helper_matches_githubs() -> None:
    assert github_anchors("## Code 12: another session took over\n## Redis down") == {
        "code-12-another-session-took-over",
        "redis-down",
    }


def test_promtool_check_config_of_the_example_scrape_job(tmp_path: Path) -> None:
    """deploy/prometheus/prometheus.yml is a valid configuration once its rule file exists."""
    promtool = need_tool("promtool")
    example = (RULES.parent / "prometheus.yml").read_text()
    assert "/etc/prometheus/schwab-stream-alerts.yml" in example
    (tmp_path / "alerts.yml").write_text(RULES.read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(example.replace("/etc/prometheus/schwab-stream-alerts.yml", "alerts.yml"))
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "job_name: schwab-stream" in example  # the name the rules expect
