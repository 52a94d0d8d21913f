"""HTTP helpers for ``OpenAIJudge``: the client library, URL and API-key checks, and a
size-capped body reader.

Nothing here ever puts the API key into a message: a bad key is described, never shown.
"""
from __future__ import annotations

import functools
import os
import re
import urllib.parse
import zlib

_USERINFO = re.compile(r"(?<=//)[^/?#]*@")
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a bearer token is made of


class ResponseTooLarge(Exception):
    """The decoded response body is longer than the cap."""


@functools.cache
def httpx_module():
    """The HTTP client library, httpx2 where installed (Python 3.11+), else httpx: the same API.

    httpx2 is the maintained fork (huggingface_hub depends on it) whose connection pool does
    linear work per request; httpx 0.28's pool rescans every connection for every queued
    request, which at 64 requests in flight ran 4x fewer judge requests per second on this
    project's benchmark machine (bench/results/perm_judging_*.md)."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def shown_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages. The credentials end at the
    authority's last ``@`` (a password may hold ``@``); a URL with an ``@`` left after that
    (a password with ``/``, ``?`` or ``#`` in it, or an ``@`` in the query) is not shown at all,
    since no rule tells its password from its path."""
    shown = _USERINFO.sub("", url, count=1)
    if "@" in shown:
        scheme = urllib.parse.urlsplit(url).scheme if "://" in url else ""
        return f"{scheme}://(URL not shown: it may hold credentials)" if scheme else "(URL not shown)"
    return shown


def chat_completions_url(url: str) -> str:
    """The chat-completions endpoint under the API root ``url``: ``/chat/completions``
    appended to its path (unless already there), a query string (``?api-version=...``) kept."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return urllib.parse.urlunsplit(parts._replace(path=path, fragment=""))


def check_url(url, name: str) -> str:
    """``url`` when it is an http(s) URL with a host (and a valid port); else a ValueError
    naming the argument ``name``."""
    if not isinstance(url, str):
        raise ValueError(f"{name} must be an http(s) URL, got {type(url).__name__}")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises on a bad port
        httpx_module().URL(url)
    except Exception as exc:
        raise ValueError(f"{name} {shown_url(url)!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL with a host, like http://127.0.0.1:8000/v1; "
                         f"got {shown_url(url)!r}")
    return url


def connect_reason(exc: BaseException) -> str:
    """Why a connection failed, from the OS error under an httpx ConnectError ("Connection
    refused", "Name or service not known"), else the exception's type. Nothing is sent before
    the connection, so this never holds the key."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno:
            return os.strerror(exc.errno) if exc.errno > 0 else str(exc.strerror or exc)[:120]
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return "ConnectError"


def api_key(env: str) -> str | None:
    """The API key in environment variable ``env`` (None when unset or blank), surrounding
    whitespace stripped. A ValueError, which does not show the key, when what is left holds a
    space, a control character (a stray ``\\r``) or a non-ASCII character."""
    key = os.environ.get(env, "").strip()
    if key and not _KEY_CHARS.fullmatch(key):
        raise ValueError(f"the API key in environment variable {env} contains a space, control or non-ASCII "
                         "character (the key is not shown); fix the variable")
    return key or None


def _decoder(encoding: str):
    """A zlib decompressor for a Content-Encoding (None for identity); ValueError for others."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ValueError(f"unsupported Content-Encoding {encoding[:40]!r}")


async def read_body(response, limit: int) -> bytes:
    """The decoded body of a streamed httpx(2) response, at most ``limit`` bytes.

    Raw bytes are decompressed here, never more than ``limit + 1`` bytes at a time, so a gzip
    bomb costs no more memory than an honest body; ``ResponseTooLarge`` past the limit."""
    decoder = _decoder(response.headers.get("content-encoding", ""))
    length = response.headers.get("content-length", "")
    if decoder is None and length.isdigit() and int(length) > limit:
        raise ResponseTooLarge(f"Content-Length {length} > {limit}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        while chunk:
            if decoder is None:
                piece, chunk = chunk, b""
            else:
                piece = decoder.decompress(chunk, limit + 1 - len(body))
                chunk = decoder.unconsumed_tail
            body += piece
            if len(body) > limit:
                raise ResponseTooLarge(f"body > {limit} bytes")
    if decoder is not None:
        body += decoder.flush(limit + 1 - len(body))
        if len(body) > limit:
            raise ResponseTooLarge(f"body > {limit} bytes")
    return bytes(body)
