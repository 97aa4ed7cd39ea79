"""An unmodified schwab-py logs in, subscribes and reads data through the simulator.

    .venv-bench/bin/python scripts/other_client_check.py      # a venv where schwab-py is installed

schwab-py hard-codes https://api.schwabapi.com, so only its network destination is changed, the
way one would on any machine: HTTPS_PROXY names a local proxy that takes CONNECT to
api.schwabapi.com:443 only, presents a certificate for that name from a CA made on the spot
(SSL_CERT_FILE, which httpx trusts), and passes the requests on to the simulator; the streamer
URL comes from the simulator's userPreference, as it comes from Schwab's. Everything else is
schwab-py's own code: get_auth_context, the authorize URL opened by a scripted person,
client_from_received_url (the code exchange with authlib), StreamClient.login, ADD, SUBS,
UNSUBS, its handlers, logout. Prints one JSON summary; exit 0 when every check held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schwab_stream.sim.clock import parse_market_time
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig

SCHWAB_HOST = "api.schwabapi.com"


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for SCHWAB_HOST, made now."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other-client-check CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SCHWAB_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SCHWAB_HOST)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Proxy:
    """A CONNECT proxy that lets through SCHWAB_HOST:443 only, ends TLS there with our
    certificate and hands the bytes to the simulator; anything else is refused and recorded."""

    def __init__(self, tls: ssl.SSLContext, sim_port: int) -> None:
        self.tls, self.sim_port = tls, sim_port
        self.tunnels = 0
        self.refused: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, _ = (await reader.readline()).decode().split(" ", 2)
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            if method != "CONNECT" or target != f"{SCHWAB_HOST}:443":
                self.refused.append(f"{method} {target}")
                writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await writer.start_tls(self.tls)
            self.tunnels += 1
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.sim_port)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


def serve_proxy(proxy: Proxy) -> int:
    """Run the proxy on its own loop in a daemon thread; returns its port."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(proxy.handle, "127.0.0.1", 0))
    threading.Thread(target=loop.run_forever, daemon=True, name="proxy").start()
    port: int = server.sockets[0].getsockname()[1]
    return port


async def use_schwab_py(sim: SimThread) -> dict[str, Any]:
    """schwab-py's own flow, start to finish; returns what it saw."""
    import httpx
    from schwab import auth
    from schwab.streaming import StreamClient

    config = sim.config
    context = auth.get_auth_context(config.app_key, config.callback_url)
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:  # the person
        received_url = (await browser.get(context.authorization_url)).headers["location"]
    tokens: list[dict[str, Any]] = []
    client = auth.client_from_received_url(
        config.app_key,
        config.app_secret,
        context,
        received_url,
        lambda token, *args, **kwargs: tokens.append(token),
        asyncio=True,
    )
    stream = StreamClient(client)
    seen: dict[str, list[dict[str, Any]]] = {"quotes": [], "bars": [], "books": []}
    stream.add_level_one_equity_handler(lambda message: seen["quotes"].append(message))
    stream.add_chart_equity_handler(lambda message: seen["bars"].append(message))
    stream.add_nasdaq_book_handler(lambda message: seen["books"].append(message))
    await stream.login()
    await stream.level_one_equity_add(["AAPL", "MSFT"])  # ADD as the first subscription
    await stream.chart_equity_subs(["AAPL"])
    await stream.nasdaq_book_subs(["AAPL"])
    deadline = asyncio.get_running_loop().time() + 20
    while not all(seen.values()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no data within 20 s: {[k for k, v in seen.items() if not v]}")
        await asyncio.wait_for(stream.handle_message(), 10)
    await stream.level_one_equity_unsubs(["MSFT"])
    seen["after_unsubs"] = []
    stream.add_level_one_equity_handler(lambda message: seen["after_unsubs"].append(message))
    for _ in range(20):
        await asyncio.wait_for(stream.handle_message(), 10)
    await stream.logout()
    await client.close_async_session()
    keys = [item["key"] for message in seen["quotes"] for item in message["content"]]
    later = [item["key"] for message in seen["after_unsubs"] for item in message["content"]]
    return {
        "token_fields": sorted(tokens[0]) if tokens else [],
        "quote_keys": sorted(set(keys)),
        "quote_commands": sorted({message["command"] for message in seen["quotes"]}),
        "first_quote": seen["quotes"][0]["content"][0],
        "bars": len(seen["bars"]),
        "books": len(seen["books"]),
        "keys_after_unsubs": sorted(set(later)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--market-time",
        default="2025-06-10T10:30",
        help="the simulator's market clock, New York time (default: a regular session)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="other-client-") as tmp:
        ca, cert, key = make_certificates(Path(tmp))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        config = SimConfig(market_time=parse_market_time(args.market_time), time_scale=60)
        with SimThread(config) as sim:
            proxy = Proxy(tls, int(sim.base_url.rsplit(":", 1)[1]))
            os.environ.update(
                HTTPS_PROXY=f"http://127.0.0.1:{serve_proxy(proxy)}",
                SSL_CERT_FILE=str(ca),
                NO_PROXY="127.0.0.1,localhost",  # the streamer URL the simulator hands out
            )
            seen = asyncio.run(use_schwab_py(sim))
            stats = dict(sim.state.stats)
            commands = dict(sim.state.commands)
    checks = {
        "logged in over OAuth through the proxy": stats.get("token_exchanges") == 1,
        "streamer LOGIN accepted": stats.get("logins") == 1,
        "quotes for both keys": seen["quote_keys"] == ["AAPL", "MSFT"],
        "data frames say SUBS after ADD": seen["quote_commands"] == ["SUBS"],
        "bars and book read": seen["bars"] > 0 and seen["books"] > 0,
        "no MSFT after its UNSUBS": "MSFT" not in seen["keys_after_unsubs"],
        "only api.schwabapi.com:443 asked for": proxy.tunnels >= 2 and not proxy.refused,
    }
    summary = {"ok": all(checks.values()), "checks": checks, "seen": seen}
    summary |= {"commands": commands, "proxy_tunnels": proxy.tunnels, "refused": proxy.refused}
    print(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
