"""Say where without saying the secret: URLs fit for a log line or an error message."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

#: A password given as an option (redis-py reads `?password=` as one)
_OPTION = re.compile(r"(?i)([?&]password=)[^&#]*")


def safe_url(url: str) -> str:
    """`url` with its password, if any, masked.

    The user and password end at the URL's last '@' (as `redis_topology.parse` reads them), so a
    password holding an unencoded '/', '?' or '#' (which urllib reads as the end of the host) is
    masked whole too; so is a `password=` option."""
    return _OPTION.sub(r"\1***", _safe_userinfo(url))


def _safe_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        return f"{scheme}://{userinfo.partition(':')[0]}:***@{after}"
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a URL urllib cannot read: show only its scheme
        return url.partition("://")[0] + "://(unreadable)"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
