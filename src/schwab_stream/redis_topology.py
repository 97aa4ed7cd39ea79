"""Which Redis a URL names: one server, a primary found through Sentinel, or a Cluster.

    redis://[user:password@]host:port/DB                    (and rediss://, unix://)
    redis+sentinel://[user:password@]host:port[,host:port...]/PRIMARY_NAME[/DB]
    redis+cluster://[user:password@]host:port[,host:port...]

(`rediss+sentinel://`, `rediss+cluster://` for TLS.) Sans-I/O: parsing, and the words for why a
topology cannot be reached (`Cause`, `Problem`), so the settings can check a URL without
connecting, and every message is one line that never shows a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit


class Kind(StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class Topology:
    kind: Kind
    #: The URL as given (for a standalone server: what redis-py opens)
    url: str = field(repr=False)
    hosts: tuple[tuple[str, int], ...] = ()
    #: Sentinel: the primary's name
    primary: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


_SCHEME_HINT = "must be a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL"
_SCHEMES = {
    "redis+sentinel": (Kind.SENTINEL, False),
    "rediss+sentinel": (Kind.SENTINEL, True),
    "redis+cluster": (Kind.CLUSTER, False),
    "rediss+cluster": (Kind.CLUSTER, True),
}


def parse(url: str) -> Topology:
    """The topology `url` names; a ValueError says what is wrong in one line."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(_SCHEME_HINT)
    if scheme not in ("redis", "rediss", "unix", *_SCHEMES):
        raise ValueError(f"{_SCHEME_HINT} (not {scheme[:20]!r})")
    standalone = scheme in ("redis", "rediss", "unix")
    # A standalone URL's ?options may hold an '@' (client_name=a@b); its path may not.
    _check_userinfo(rest.split("?")[0].split("#")[0] if standalone else rest)
    if standalone:
        return Topology(Kind.STANDALONE, url, tls=scheme == "rediss")
    kind, tls = _SCHEMES[scheme]
    if "?" in rest or "#" in rest:
        raise ValueError("takes no ?options or #fragment after the hosts and primary name")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = tuple(_host(part) for part in hostlist.split(","))
    parts = [p for p in path.split("/") if p]
    primary, db = "", 0
    if kind is Kind.SENTINEL:
        if not parts:
            raise ValueError(
                "names no primary: redis+sentinel://HOST:PORT[,HOST:PORT]/PRIMARY_NAME[/DB]"
            )
        primary = unquote(parts[0])
        db = _db(parts[1]) if len(parts) > 1 else 0
        if len(parts) > 2:
            raise ValueError("has more after the database number than it should")
    elif parts:
        raise ValueError("a cluster URL has no path: a cluster has only database 0")
    return Topology(kind, url, hosts, primary, db, username, password, tls)


def _check_userinfo(rest: str) -> None:
    """The user and password end at the last '@', the hosts at the first '/', '?' or '#': an '@'
    after one of those means the user or password holds it unencoded, and the URL would be read
    with part of the password as a host (and said in an error) or as a path."""
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    if "@" in rest[end:] and "@" not in rest[:end]:
        raise ValueError(
            "has '/', '?' or '#' in its user or password: percent-encode them (%2F, %3F, %23)"
        )


def _host(text: str) -> tuple[str, int]:
    text = text.strip()
    if not text:
        raise ValueError("has an empty host in its list (HOST:PORT,HOST:PORT)")
    try:
        parts = urlsplit(f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"host {text[:60]!r}: not HOST:PORT with a port from 1 to 65535") from None
    if not host or not port:
        raise ValueError(f"host {text[:60]!r}: not HOST:PORT (each host needs its port)")
    return host, port


def _db(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise ValueError(f"database {text[:20]!r} is not a number from 0 to 999999999")
    return int(text)


class Cause(StrEnum):
    """Why the bridge cannot reach its Redis, decided where the error happens (`redis_client`):
    `/healthz` and the log name it so a person knows what to fix."""

    REFUSED = "refused"  # nothing listens at the address
    TIMEOUT = "timeout"  # no answer in time
    UNREACHABLE = "unreachable"  # another network error (no route, a name that does not resolve)
    AUTH = "auth"  # the server refused the URL's user or password
    NO_SENTINEL = "no_sentinel"  # none of the URL's sentinels answered
    UNKNOWN_PRIMARY = "unknown_primary"  # the sentinels answered, none knows the primary's name
    PRIMARY_DOWN = "primary_down"  # the sentinels know it, but see it down (no replica promoted)
    NOT_CLUSTER = "not_cluster"  # a cluster URL, and the server is not in cluster mode
    IS_CLUSTER = "is_cluster"  # a standalone or Sentinel URL, and the server is a cluster node
    NOT_SENTINEL = "not_sentinel"  # a Sentinel URL, and its servers answer but are no sentinels
    IS_SENTINEL = "is_sentinel"  # a standalone or cluster URL, and the server is a sentinel
    SLOTS_UNCOVERED = "slots_uncovered"  # the cluster answers, but not every slot has a primary
    WRITES_FAIL = "writes_fail"  # Redis answers, and the bridge's writes fail all the same


@dataclass(frozen=True)
class Problem:
    """A `Cause` with its one line for a person (addresses and names, never a password)."""

    cause: Cause
    detail: str


def problem(cause: Cause, where: Topology, address: str = "") -> Problem:
    """The words for `cause` at `where`; `address` is the HOST:PORT (or list) it concerns."""
    scheme = where.url.partition("://")[0]
    hosts = ",".join(f"{host}:{port}" for host, port in where.hosts)
    at = f" at {address}" if address else ""
    sentinels = f"{len(where.hosts)} address" + ("" if len(where.hosts) == 1 else "es")
    words = {
        Cause.REFUSED: f"connection refused{at}",
        Cause.TIMEOUT: f"no answer in time{at}",
        Cause.UNREACHABLE: f"cannot connect{at}",
        Cause.AUTH: f"the server{at} refused the URL's user or password",
        Cause.NO_SENTINEL: f"no sentinel answers ({sentinels}: {hosts})",
        Cause.UNKNOWN_PRIMARY: f"the sentinels do not know primary {where.primary!r} "
        "(the name after the hosts in the URL)",
        Cause.PRIMARY_DOWN: f"the sentinels see primary {where.primary!r} down and have "
        "promoted no replica yet",
        Cause.NOT_CLUSTER: f"this URL is {scheme}:// but the server{at} is not in cluster mode "
        "(use redis://)",
        Cause.IS_CLUSTER: f"this URL is {scheme}:// but the server{at} is a cluster node "
        "(use redis+cluster://)",
        Cause.NOT_SENTINEL: f"this URL is {scheme}:// but the server{at} is not a sentinel "
        "(use redis:// for the server itself)",
        Cause.IS_SENTINEL: f"this URL is {scheme}:// but the server{at} is a sentinel "
        "(use redis+sentinel://HOST:PORT/PRIMARY_NAME)",
        Cause.SLOTS_UNCOVERED: "cluster slots not covered"
        + (f", no answer from {address}" if address else "")
        + " (a primary down with no replica to promote, or slots never assigned)",
        Cause.WRITES_FAIL: "redis answers, but the bridge's writes fail (the publisher's "
        "log line says why: out of memory, no permission, ...)",
    }
    return Problem(cause, words[cause])
