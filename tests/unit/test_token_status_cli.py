"""`token status` gives cron one exit code (3) whenever a person must log in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from schwab_stream.cli import main


@pytest.mark.parametrize("content", [None, "{not json", '{"format": "something-else"}'])
@pytest.mark.parametrize("as_json", [False, True])
def test_missing_or_broken_token_file_means_login_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, as_json: bool
) -> None:
    path = tmp_path / "token.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCHWAB_TOKEN_PATH", str(path))
    result = CliRunner().invoke(main, ["token", "status", *(["--json"] if as_json else [])])
    assert result.exit_code == 3, result.output
    if as_json:
        assert json.loads(result.stdout)["login_needed"] is True
    else:
        assert "schwab-stream login" in result.stderr and "Traceback" not in result.output
