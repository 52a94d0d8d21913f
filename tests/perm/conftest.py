"""A real OpenAI-compatible chat-completions server on loopback, scripted per request.

The judge prompt embeds the text being judged, so a completion carries a marker such as
``[[judge:garbage]]`` that tells the server how to answer: well, with garbage, with 429 or
500 (once, or always), with an out-of-range score, a broken body, a reply cut off at its
token limit, or too slowly; or with
hostile behaviour: 401/403, a body dripped at one byte per ``drip_seconds``, a huge body, a
gzip bomb. ``server.default_mode`` answers unmarked prompts. The server records what it saw
(Authorization headers, attempts per prompt, the most requests in flight).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import gzip
import http.server
import json
import math
import re
import socket
import threading
import time

import pytest

_MARKER = re.compile(r"\[\[judge:([a-z0-9_]+)\]\]")
HUGE_BYTES = 300 * 2 ** 20
BOMB_BYTES = 64 * 2 ** 20  # what the gzip bomb expands to (from about 64 KiB on the wire)


@functools.lru_cache(maxsize=None)
def gzip_bomb(prefix: bytes) -> bytes:
    """A gzip body expanding to a valid JSON reply followed by BOMB_BYTES of spaces."""
    return gzip.compress(prefix + b" " * BOMB_BYTES, compresslevel=9)


def _position(token: str, alternatives: dict[str, float]) -> dict:
    return {"token": token, "logprob": math.log(alternatives[token]),
            "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alternatives.items()]}


# Score-only replies with logprobs, as vLLM returns them: a 1-5 score in one token (expected
# 0.7 * 4 + 0.2 * 5 + 0.1 * 3 = 4.1) and a 0-100 score split into digits as Qwen's tokenizer
# does (10 * (0.6 * 7 + 0.3 * 6 + 0.1 * 8) + 0.5 * 0 + 0.5 * 5 = 70.5).
LOGPROB_REPLIES = {
    "narrow": ("4", {"content": [_position("4", {"4": 0.7, "5": 0.2, "3": 0.1})]}),
    "wide": ("70", {"content": [_position("7", {"7": 0.6, "6": 0.3, "8": 0.1}),
                                _position("0", {"0": 0.5, "5": 0.5})]}),
}


class ScriptedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.attempts: collections.Counter = collections.Counter()
        self.auth_headers: list[str | None] = []
        self.bodies: list[dict] = []  # every request body, in arrival order
        self.paths: list[str] = []  # every request's path (and query)
        self.in_flight = 0
        self.max_in_flight = 0
        self.slow_seconds = 2.0
        self.drip_seconds = 0.2
        self.delay = 0.0
        self.default_mode = "good"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def total_requests(self) -> int:
        return sum(self.attempts.values())


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): fine

    def _stream(self, length: int, headers: dict, chunks, pause: float = 0.0):
        """Headers announcing ``length`` bytes, then the pieces of ``chunks`` (until the client hangs up)."""
        try:
            self.send_response(200)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(length), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = body["messages"][-1]["content"]
        markers = _MARKER.findall(prompt)
        mode = markers[-1] if markers else srv.default_mode
        with srv.lock:
            srv.attempts[prompt] += 1
            attempt = srv.attempts[prompt]
            srv.auth_headers.append(self.headers.get("Authorization"))
            srv.bodies.append(body)
            srv.paths.append(self.path)
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            if srv.delay:
                time.sleep(srv.delay)
            wide = "from 0 to 100" in prompt
            good = "The reply reflects the feelings.\nTotal score: 70/100" if wide else "Solid.\nScore: 4"
            if mode == "slow":
                time.sleep(srv.slow_seconds)
            if mode == "always500" or (mode == "flaky500" and attempt == 1):
                return self._send(500, b'{"error": "overloaded"}')
            if mode == "always429" or (mode == "flaky429" and attempt == 1):
                return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
            if mode == "reject":
                return self._send(400, b'{"error": "bad request"}')
            if mode in ("unauthorized", "forbidden"):
                return self._send(401 if mode == "unauthorized" else 403, b'{"error": "invalid api key"}')
            if mode == "badjson":
                return self._send(200, b"<html>not json</html>")
            text = {"garbage": "I would rather not say.", "out_of_range": "Score: 9" if not wide else "Total: 250/100"}
            content = text.get(mode, good)
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
            if mode == "truncated":  # cut off at max_tokens after a sub-score, before the verdict
                choice.update(finish_reason="length", message={"role": "assistant", "content": "Accuracy score: 3"})
            if body.get("logprobs") and mode == "wordfirst":  # a word sampled, digits among its candidates
                choice["message"]["content"] = "The"
                choice["logprobs"] = {"content": [_position("The", {"The": 0.6, "7": 0.3, "4": 0.1})]}
            elif body.get("logprobs") and mode != "nologprobs":  # a score-only reply with its logprobs
                content, choice["logprobs"] = LOGPROB_REPLIES["wide" if wide else "narrow"]
                choice["message"]["content"] = content
            elif body.get("logprobs"):
                choice["message"]["content"] = "70" if wide else "4"
            reply = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}
            data = json.dumps(reply).encode()
            if mode == "drip":  # headers now, then one byte at a time
                return self._stream(len(data), {}, (data[i:i + 1] for i in range(len(data))), srv.drip_seconds)
            if mode == "huge":  # a valid reply padded to HUGE_BYTES with spaces
                pad = b" " * 2 ** 20
                n = HUGE_BYTES - len(data)
                return self._stream(HUGE_BYTES, {}, [data] + [pad] * (n // len(pad)) + [b" " * (n % len(pad))])
            if mode in ("gzip", "gzipbomb"):
                zipped = gzip_bomb(data) if mode == "gzipbomb" else gzip.compress(data)
                return self._stream(len(zipped), {"Content-Encoding": "gzip"}, [zipped])
            self._send(200, data)
        finally:
            with srv.lock:
                srv.in_flight -= 1


@contextlib.contextmanager
def _serving():
    server = ScriptedServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def judge_server():
    with _serving() as server:
        yield server


@pytest.fixture
def second_judge_server():
    with _serving() as server:
        yield server


@pytest.fixture
def refused_url():
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(params=["httpx2", "httpx"])
def http_library(request, monkeypatch):
    """Runs a test with each HTTP client library ``OpenAIJudge`` may use: httpx2 where
    installed, httpx where not (Python 3.10). Yields the module in use."""
    import sys

    from pyl2d.perm import _http

    if request.param == "httpx":
        monkeypatch.setitem(sys.modules, "httpx2", None)  # `import httpx2` raises ImportError
    else:
        pytest.importorskip("httpx2")
    _http.httpx_module.cache_clear()
    module = _http.httpx_module()
    assert module.__name__ == request.param
    yield module
    _http.httpx_module.cache_clear()
