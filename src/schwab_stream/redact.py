"""Say where without saying the secret: URLs fit for a log line or an error message."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """`url` with its password, if any, masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a URL urllib cannot read: show only its scheme
        return url.partition("://")[0] + "://(unreadable)"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
