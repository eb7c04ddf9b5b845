"""Who may use the server and how much one request may cost, checked before a request reaches an endpoint.

ASGI middlewares, outermost first: :class:`HostCheck` (the Host header, against DNS rebinding),
:class:`OriginCheck` (which sites' pages may open a WebSocket), :class:`ApiKeyCheck` (an optional API key),
:class:`BodySizeLimit` (every request body, by its declared length and as it arrives) and :class:`Admission`
(how many transcriptions the server holds at once). They answer ``{"detail": "<message>"}`` like the endpoints
do, a refused WebSocket handshake included (an HTTP answer instead of the upgrade); none of them ever logs or
echoes the API key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .uploads import too_large

#: Environment variable ``ai2text serve`` reads the API key from (``--api-key-file`` names a file instead).
API_KEY_ENV = "AI2TEXT_API_KEY"
#: Host names always served, besides IP addresses (see :class:`HostCheck`).
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Largest body of a request other than an upload: the JSON endpoints take a few bytes.
MAX_JSON_BODY_BYTES = 64 * 1024
#: A WebSocket client sends the API key as the subprotocol ``bearer.<key, base64url without padding>``: browsers
#: cannot set headers on a WebSocket, and a key in the URL would end up in access logs.
KEY_PROTOCOL_PREFIX = "bearer."
#: Room for the multipart framing and the text fields on top of the audio in an upload's body.
FORM_OVERHEAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class AccessSettings:
    """Who may reach the server and what they may do.

    Args:
        api_key: when set, every request but the page, the API docs and ``/health`` must send it as
            ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (401 otherwise).
        model_management: allow ``POST /models/load`` and ``DELETE /models/{name}`` (403 when off).
        allowed_hosts: host names served besides localhost and IP addresses; ``*`` serves any name.
        cors_origins: origins (``https://app.example.com``) whose pages may call the API from a browser;
            none by default, so browsers keep other sites' pages from reading the answers.
    """

    api_key: str | None = field(default=None, repr=False)
    model_management: bool = False
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()


def read_api_key(path: str | os.PathLike | None = None) -> str | None:
    """The API key from the first line of ``path``, else from ``$AI2TEXT_API_KEY``, else None (no key).

    Never from a command-line value, which any user of the machine can read in the process list.
    """
    if path is None:
        return os.environ.get(API_KEY_ENV) or None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ValueError(f"Cannot read the API key file {path}: {error.strerror}.") from error
    key = lines[0].strip() if lines else ""
    if not key:
        raise ValueError(f"The API key file {path} is empty: write the key on its first line.")
    return key


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(scope, receive, send)


def _hostname(host: str) -> str | None:
    """``example.com:8000`` -> ``example.com``, ``[::1]:8000`` -> ``::1``; None when malformed."""
    try:
        name = urlsplit(f"//{host}").hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Serve only requests whose Host header names this server.

    A DNS-rebinding page points its own domain at 127.0.0.1 and then calls the server from the user's
    browser; the Host header still carries the page's domain, so refusing unknown names stops it. IP
    addresses are always served (no DNS, so nothing to rebind), as are localhost and ``allowed``; ``*``
    turns the check off. Written here because Starlette's TrustedHostMiddleware answers plain text and
    splits ``[::1]:8000`` at its first colon.
    """

    def __init__(self, app: ASGIApp, allowed: Collection[str] = ()):
        self.app = app
        self.allowed = {name.lower().strip("[]").rstrip(".") for name in (*LOCAL_HOSTS, *allowed)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = Headers(scope=scope).get("host") if scope["type"] in ("http", "websocket") else None
        if host is None or "*" in self.allowed:  # no Host header: HTTP/1.0, never a browser (which rebinding needs)
            return await self.app(scope, receive, send)
        name = _hostname(host)
        if name is not None and (name in self.allowed or _is_ip(name)):
            return await self.app(scope, receive, send)
        detail = (
            f"This server does not answer for the host {host!r} (a guard against DNS rebinding). Reach it by IP "
            "address or localhost, or start it with --allowed-host NAME to serve that name."
        )
        await _refuse(scope, receive, send, 400, detail)


class OriginCheck:
    """Refuse (403) WebSocket handshakes from other sites' pages: browsers apply no CORS to WebSockets, so without
    this any page the user opens could stream through the server. Same-origin pages, ``allowed`` origins and
    clients that send no Origin (not browsers) are served."""

    def __init__(self, app: ASGIApp, allowed: Collection[str] = ()):
        self.app = app
        self.allowed = frozenset(origin.rstrip("/").lower() for origin in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["type"] != "websocket" or origin is None:
            return await self.app(scope, receive, send)
        origin = origin.rstrip("/").lower()
        if origin in self.allowed or urlsplit(origin).netloc == headers.get("host", "").lower():
            return await self.app(scope, receive, send)
        detail = (
            f"WebSockets from pages of {origin} are refused: only this server's own page may open one, or the "
            "origins given with --cors-origin."
        )
        await _refuse(scope, receive, send, 403, detail)


def _key_from_protocols(protocols: Collection[str]) -> str | None:
    """The key a WebSocket client offered as ``bearer.<base64url>``; an undecodable one is returned as sent, so it
    is refused as a wrong key."""
    for protocol in protocols:
        if protocol.startswith(KEY_PROTOCOL_PREFIX):
            encoded = protocol[len(KEY_PROTOCOL_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                return encoded
    return None


class ApiKeyCheck:
    """Refuse (401) requests and WebSocket handshakes without the API key, except on ``public`` paths and under
    ``public_prefix``.

    The key is compared in constant time, so answer times tell nothing about it.
    """

    def __init__(self, app: ASGIApp, key: str, public: Collection[str], public_prefix: str):
        self.app = app
        self.key = key.encode()
        self.public = frozenset(public)
        self.public_prefix = public_prefix

    def _sent_key(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return headers.get("x-api-key") or _key_from_protocols(scope.get("subprotocols", ()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or path in self.public or path.startswith(self.public_prefix):
            return await self.app(scope, receive, send)
        sent = self._sent_key(scope)
        if sent is not None and hmac.compare_digest(sent.encode(), self.key):
            return await self.app(scope, receive, send)
        detail = (
            "This server needs an API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'. A "
            f"browser's WebSocket sends it as the subprotocol '{KEY_PROTOCOL_PREFIX}<key in base64url>'."
            if sent is None
            else "The API key sent is not this server's."
        )
        await _refuse(scope, receive, send, 401, detail, {"WWW-Authenticate": "Bearer"})


class BodySizeLimit:
    """Bound every request body: ``upload_path`` to an audio file plus the form around it, any other path to
    :data:`MAX_JSON_BODY_BYTES`.

    A declared Content-Length over the limit is refused at once, before anything is read; a body without
    one (chunked) is counted as it arrives and refused (413) when it passes the limit, so nothing over it
    is ever spooled. Written here because FastAPI's own ``max_body_size`` (0.165+) answers a bare
    "Content Too Large" and needs a newer FastAPI than the ``serve`` extra asks for.
    """

    def __init__(self, app: ASGIApp, upload_path: str, max_upload_bytes: int):
        self.app = app
        self.upload_path = upload_path
        self.max_upload_bytes = max_upload_bytes

    def _limit(self, path: str) -> int:
        return self.max_upload_bytes + FORM_OVERHEAD_BYTES if path == self.upload_path else MAX_JSON_BODY_BYTES

    def _refusal(self, path: str, what: str) -> str:
        if path == self.upload_path:
            return too_large(what, self.max_upload_bytes)
        return f"{what} is larger than the {MAX_JSON_BODY_BYTES // 1024} KiB this server takes on {path}."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit = self._limit(path)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            detail = self._refusal(path, f"The request ({int(declared) / 2**20:.1f} MiB)")
            return await _refuse(scope, receive, send, 413, detail)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # FastAPI's body parsing passes an HTTPException on as the answer
                raise HTTPException(413, self._refusal(path, "The request"))
            return message

        await self.app(scope, counted, send)


class Admission:
    """At most ``limit`` requests on ``path`` in the server at once, counted from their first byte until
    answered (upload, decoding, queue and model run); more are refused (503) before their body is read.

    This bounds what uploads can cost together: their spooled bodies, their decodes and their queued
    waveforms. The event loop runs every call, so a plain counter is safe.
    """

    def __init__(self, app: ASGIApp, path: str, limit: int):
        self.app = app
        self.path = path
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        if self.active >= self.limit:
            detail = f"The server is busy: {self.active} transcriptions are in progress, its limit; retry in a moment."
            return await _refuse(scope, receive, send, 503, detail, {"Retry-After": "1"})
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
