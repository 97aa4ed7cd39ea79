"""The one step that needs a person: the browser login that starts the refresh token's 7-day clock.

Two ways, both verifying `state`: a local HTTPS server on the callback URL's host and port (with a
certificate made at run time, so nothing is installed) catches Schwab's redirect; or, on a server
reached over SSH, the person opens the URL anywhere and pastes the address the browser lands on.
The token file lock is taken only to save the result, never while waiting for the person.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schwab_stream.auth.client import SchwabAuthClient, new_state
from schwab_stream.auth.token_store import TokenRecord
from schwab_stream.config import Settings
from schwab_stream.errors import AuthError, ConfigError

log = logging.getLogger(__name__)

#: How long the local callback server waits for the browser.
CALLBACK_TIMEOUT = 300.0

_DONE_PAGE = (
    "<!doctype html><title>schwab-stream</title>"
    "<p>Logged in. schwab-stream has the tokens; you can close this tab.</p>"
)


async def login(
    settings: Settings,
    *,
    manual: bool = False,
    open_browser: Callable[[str], bool] | None = webbrowser.open,
    read_line: Callable[[], str] | None = None,
    echo: Callable[[str], None] = print,
    timeout: float = CALLBACK_TIMEOUT,
) -> TokenRecord:
    """Run the browser login and save the tokens; returns the new record.

    `open_browser=None` only prints the URL (the callback server still runs); `manual=True` skips
    the server and reads the redirect URL with `read_line` (default: a line of stdin).
    """
    client = SchwabAuthClient(settings)
    try:
        state = new_state()
        url = client.authorize_url(state)
        if manual:
            code = await _manual_code(url, state, read_line or _stdin_line, echo)
        else:
            code = await _callback_code(
                settings.callback_url, url, state, open_browser, echo, timeout
            )
        return await client.exchange_code(code)
    finally:
        await client.aclose()


def _stdin_line() -> str:
    return sys.stdin.readline()


async def _in_daemon_thread(read_line: Callable[[], str]) -> str:
    """`read_line()` in a daemon thread. Not `asyncio.to_thread`: on Ctrl-C `asyncio.run` waits
    for its executor's threads, so a thread blocked on stdin held the process until Enter."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(line: str | None, exc: BaseException | None) -> None:
        if answer.done():
            return
        if exc is not None:
            answer.set_exception(exc)
        else:
            answer.set_result(line or "")

    def read() -> None:
        line: str | None = None
        error: BaseException | None = None
        try:
            line = read_line()
        except Exception as exc:  # handed to the waiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, line, error)

    threading.Thread(target=read, name="login-paste", daemon=True).start()
    return await answer


def code_from_redirect(redirect_url: str, state: str) -> str:
    """The `code` of a pasted redirect URL, after checking its `state` belongs to this login."""
    query = parse_qs(urlsplit(redirect_url.strip()).query)
    if "error" in query:
        error = query["error"][0][:64]
        raise AuthError(f"Schwab refused the login ({error}): try `schwab-stream login` again")
    codes, states = query.get("code"), query.get("state")
    if not codes:
        raise AuthError(
            "the pasted URL has no code parameter: paste the whole address the browser shows "
            "after you approve (it starts with your callback URL)"
        )
    if states != [state]:
        raise AuthError(
            "the pasted URL's state does not match this login: paste the URL from this login, "
            "not an older one"
        )
    return codes[0]


async def _manual_code(
    url: str, state: str, read_line: Callable[[], str], echo: Callable[[str], None]
) -> str:
    echo("Open this URL in a browser (any machine), log in to Schwab and approve:")
    echo("")
    echo(f"    {url}")
    echo("")
    echo(
        "The browser then fails to load a page on your callback URL; that is expected. Copy the "
        "whole address from its address bar and paste it here within about 30 s (the code in it "
        "expires quickly):"
    )
    line = await _in_daemon_thread(read_line)
    if not line.strip():
        raise AuthError("no redirect URL was pasted: run `schwab-stream login --manual` again")
    return code_from_redirect(line, state)


async def _callback_code(
    callback_url: str,
    url: str,
    state: str,
    open_browser: Callable[[str], bool] | None,
    echo: Callable[[str], None],
    timeout: float,
) -> str:
    parts = urlsplit(callback_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            "SCHWAB_CALLBACK_URL must be an https:// URL (Schwab requires it), "
            f"not {callback_url!r}"
        )
    host, port, path = parts.hostname, parts.port or 443, parts.path or "/"
    received: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        query = request.query
        if query.get("state") != state:
            log.warning("ignored a login callback whose state does not match this login")
            return web.Response(status=400, text="state does not match this login; ignored")
        if "error" in query:
            if not received.done():
                received.set_exception(
                    AuthError(f"Schwab refused the login ({query['error'][:64]}): try again")
                )
            return web.Response(status=400, text="Schwab refused the login")
        code = query.get("code")
        if not code:
            return web.Response(status=400, text="no code in the callback")
        if not received.done():
            received.set_result(code)
        return web.Response(text=_DONE_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get(path, callback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=self_signed_context(host))
        try:
            await site.start()
        except OSError as exc:
            raise AuthError(
                f"cannot listen on {host}:{port} for the login callback ({exc.strerror}): "
                "use `schwab-stream login --manual`"
            ) from None
        echo(f"Waiting for Schwab's redirect on {callback_url} (self-signed certificate: the")
        echo("browser warns once; accept to continue). Log in here if no browser opens:")
        echo("")
        echo(f"    {url}")
        echo("")
        if open_browser is not None and not open_browser(url):
            echo("(could not open a browser; open the URL above yourself)")
        try:
            return await asyncio.wait_for(received, timeout)
        except TimeoutError:
            raise AuthError(
                f"no login callback arrived within {timeout:.0f} s: run `schwab-stream login` "
                "again, or `schwab-stream login --manual`"
            ) from None
    finally:
        await runner.cleanup()


def listen_exposure(host: str) -> str | None:
    """Who besides this machine can reach a server bound to `host`, in words; None when only
    this machine can (a loopback address or `localhost`). `0.0.0.0` and `::` are every interface."""
    if host.lower() == "localhost":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}, a name that may resolve to a network interface"
    if address.is_loopback:
        return None
    if address.is_unspecified:
        return f"{host}, every network interface of this machine"
    return f"{host}, a network interface of this machine"


def self_signed_context(host: str) -> ssl.SSLContext:
    """A TLS server context with a fresh one-day certificate for `host` (IP or name)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.touch(mode=0o600)
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_file, key_file)
    return context
