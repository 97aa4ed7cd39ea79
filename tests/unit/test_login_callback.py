from __future__ import annotations

from schwab_stream.cli.login import callback_problems


def test_callback_url_rules_are_checked_before_the_browser() -> None:
    assert callback_problems("https://127.0.0.1:8182") == []
    problems = callback_problems("http://localhost")
    assert len(problems) == 3
    assert any("https" in p for p in problems) and any("127.0.0.1" in p for p in problems)
