"""The simulator's OAuth side: authorize, token, userPreference, and token fault controls.

It answers as Schwab does (paths, Basic client auth, form bodies, the error bodies users report
in docs/schwab-protocol.md §2.4), so the client is tested against the shapes it will meet, not
against mocks.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from schwab_stream.sim.state import SimState
from schwab_stream.sim.tokens import (
    SIM_ACCOUNT,
    SIM_CHANNEL,
    SIM_CORREL_ID,
    SIM_CUSTOMER_ID,
    SIM_FUNCTION_ID,
)

#: `state.extra` key: planned failures of the token endpoint, [(status, remaining count)].
FAIL_NEXT_KEY = "oauth_fail_next"


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _dead_refresh_token() -> web.Response:
    """The body Schwab sends for a revoked or unknown refresh token (Schwabdev#40)."""
    inner = json.dumps(
        {
            "error_description": "Exception while authenticating refresh token "
            f"[tokenDigest={secrets.token_hex(16)}]",
            "error": "refresh_token_authentication_error",
        }
    )
    return _error(400, "unsupported_token_type", f'400 Bad Request: "{inner}"')


def _id_token() -> str:
    """A JWT-shaped id_token (unsigned: nothing in schwab-stream verifies it)."""

    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    header = part({"alg": "none", "typ": "JWT"})
    payload = part({"sub": SIM_CUSTOMER_ID, "iss": "schwab-stream-sim"})
    return f"{header}.{payload}.{secrets.token_urlsafe(16)}"


def _seconds(value: float) -> int | float:
    """Schwab sends whole seconds (1800); shortened test lifetimes may be fractional."""
    return int(value) if float(value).is_integer() else value


def _client_ok(request: web.Request, state: SimState) -> bool:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    key, _, secret = decoded.partition(":")
    return secrets.compare_digest(key, state.config.app_key) and secrets.compare_digest(
        secret, state.config.app_secret
    )


def _bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" else ""


def setup(app: web.Application, state: SimState) -> None:
    """Register the OAuth routes and the /sim/tokens/* controls."""

    async def authorize(request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != state.config.app_key:
            return web.Response(status=400, text="Invalid client_id")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri != state.config.callback_url:
            return web.Response(status=400, text="redirect_uri does not match the registered one")
        # Schwab issues a code without response_type and state too (public notebooks use
        # `?client_id=..&redirect_uri=..` alone); a response_type other than code is refused.
        if query.get("response_type", "code") != "code":
            return web.Response(status=400, text="response_type must be code")
        code = state.tokens.issue_code(redirect_uri)
        params = {"code": code, "session": str(uuid.uuid4())}
        if "state" in query:
            params["state"] = query["state"]
        target = redirect_uri if urlsplit(redirect_uri).path else redirect_uri + "/"
        # The Location header as is: HTTPFound would normalise `%40` back to `@` (yarl), and
        # Schwab's redirect encodes the code's trailing `@` as `%40`.
        return web.Response(status=302, headers={"Location": f"{target}?{urlencode(params)}"})

    async def token(request: web.Request) -> web.Response:
        plan = state.extra.get(FAIL_NEXT_KEY)
        if plan and plan[1] > 0:
            state.extra[FAIL_NEXT_KEY] = (plan[0], plan[1] - 1)
            headers = {"Retry-After": "0"} if plan[0] == 429 else None
            return web.json_response(
                {"error": "server_error", "error_description": "simulated failure"},
                status=plan[0],
                headers=headers,
            )
        if not _client_ok(request, state):
            return _error(401, "invalid_client", "Client authentication failed")
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            code, redirect_uri = str(form.get("code", "")), str(form.get("redirect_uri", ""))
            if not state.tokens.redeem_code(code, redirect_uri):
                return _error(400, "invalid_grant", "Authorization code is invalid or expired")
            access, refresh = state.tokens.login()
            state.stats["token_exchanges"] += 1
        elif grant_type == "refresh_token":
            refresh = str(form.get("refresh_token", ""))
            new_access = state.tokens.refresh(refresh)
            if new_access is None:
                if state.tokens.refresh_failure(refresh) == "expired":
                    return _error(400, "invalid_client", "refresh token invalid")
                return _dead_refresh_token()
            access = new_access
            state.stats["token_refreshes"] += 1
        else:
            return _error(400, "unsupported_grant_type", f"grant_type {grant_type!r}")
        return web.json_response(
            {
                "expires_in": _seconds(state.tokens.access_ttl),
                "token_type": "Bearer",
                "scope": "api",
                "refresh_token": refresh,
                "access_token": access,
                "id_token": _id_token(),
            }
        )

    async def user_preference(request: web.Request) -> web.Response:
        state.stats["user_preferences"] += 1
        if not state.tokens.is_access_valid(_bearer(request)):
            return web.json_response(
                {"errors": [{"status": "401", "title": "Unauthorized", "detail": "Invalid token"}]},
                status=401,
            )
        return web.json_response(
            {
                "accounts": [
                    {
                        "accountNumber": SIM_ACCOUNT,
                        "primaryAccount": True,
                        "type": "BROKERAGE",
                        "nickName": "Individual",
                        "displayAcctId": "..." + SIM_ACCOUNT[-3:],
                        "autoPositionEffect": False,
                        "accountColor": "Green",
                    }
                ],
                "streamerInfo": [
                    {
                        "streamerSocketUrl": state.streamer_url,
                        "schwabClientCustomerId": SIM_CUSTOMER_ID,
                        "schwabClientCorrelId": SIM_CORREL_ID,
                        "schwabClientChannel": SIM_CHANNEL,
                        "schwabClientFunctionId": SIM_FUNCTION_ID,
                    }
                ],
                "offers": [{"level2Permissions": True, "mktDataPermission": "NP"}],
            }
        )

    async def revoke(request: web.Request) -> web.Response:
        state.tokens.revoke_all()
        return web.json_response({"ok": True})

    async def expire_access(request: web.Request) -> web.Response:
        state.tokens.expire_access_tokens()
        return web.json_response({"ok": True})

    async def fail_next(request: web.Request) -> web.Response:
        """Make the next `count` token requests fail with `status` (transient-error tests)."""
        try:
            status = int(request.query.get("status", "503"))
            count = int(request.query.get("count", "1"))
        except ValueError:
            return web.Response(status=400, text="status and count must be integers")
        state.extra[FAIL_NEXT_KEY] = (status, count)
        return web.json_response({"ok": True})

    app.router.add_get("/v1/oauth/authorize", authorize)
    app.router.add_post("/v1/oauth/token", token)
    app.router.add_get("/trader/v1/userPreference", user_preference)
    app.router.add_post("/sim/tokens/revoke", revoke)
    app.router.add_post("/sim/tokens/expire-access", expire_access)
    app.router.add_post("/sim/tokens/fail-next", fail_next)
