"""PERM judging at GRPO scale (issue 11): text scoring vs logprob scoring, prompts ordered for
prefix caching or not, one vs three judge servers, on a loopback OpenAI-compatible server that
simulates a vLLM judge's costs.

    python bench/perm_judging.py            # 64 prompts x 8 generations x 4 perspectives
    python bench/perm_judging.py --quick    # 8 x 4 x 4 (smoke run)

The simulated server (one per "GPU") runs up to ``BATCH`` requests at once, like a vLLM
engine's running batch, and holds each for ``PREFILL_MS`` per prompt token not in its prefix
cache plus ``DECODE_MS`` per generated token. Its prefix cache is vLLM's automatic prefix
caching in miniature: prompts are cut into blocks of ``BLOCK`` tokens, and a block is cached
when the whole prompt up to its end has been seen before (tokens: words and punctuation).
The numbers are a 7B judge on one H100: vLLM decodes at about 20 ms per step for a running
batch of 64 and prefills about 50k tokens per second (0.02 ms per token); the client and the
loopback servers add a few ms per request of their own on a 2-core machine. Text replies are a scripted rationale of about 60
tokens ending in "Score: N", as judges write with the default rubric prompts; score-only
replies are one or two tokens with top_logprobs around the same score, so both scorings see
the same underlying judge and their rewards can be compared (Spearman rank correlation).

"Unordered" prompts put the supporter's text before the rubric (what a prompt template that
leads with the thing judged does), so no two prompts share more than the system message.
Generated judge tokens are counted by the server; wall time is one PERMReward call per batch.

Against a real server (issue 25)::

    python bench/perm_judging.py --server http://127.0.0.1:8000/v1 --model NAME \
        [--prompts 8 --generations 8] [--server-log FILE]

runs text and logprob scoring on the same batch (the 4 default perspectives), counting the
generated and prompt tokens from each reply's ``usage`` and, with ``--server-log`` (llama.cpp's
server run with ``--verbose true``), the prompt tokens it served from its prefix cache
("N prefix-match hit" lines), and reports the rank agreement (Spearman) of the rewards.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import math
import os
import re
import sys
import threading
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _harness  # noqa: E402
from pyl2d.perm import OpenAIJudge, PERMReward  # noqa: E402
from pyl2d.perm._http import httpx_module  # noqa: E402
from pyl2d.perm.judges import Judge, JudgeRequest  # noqa: E402

BATCH = 64
PREFILL_MS = 0.02
DECODE_MS = 20.0
BLOCK = 16
RATIONALE = ("The supporter names the feeling the seeker described and reflects the situation back in their "
             "own words, which shows they listened. The reply stays with the seeker rather than jumping to "
             "advice, although one sentence drifts toward generic reassurance. Overall the response is warm "
             "and specific.")
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def judged_score(prompt: str, low: int, high: int) -> float:
    """The simulated judge's opinion: a deterministic function of what it is asked to judge."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return low + (high - low) * (digest[0] / 255.0)


class SimServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a burst of connections must not wait out TCP's SYN retry (1 s)

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SimHandler)
        self.slots = threading.BoundedSemaphore(BATCH)
        self.lock = threading.Lock()
        self.cached: set[bytes] = set()
        self.generated = 0
        self.prompt_tokens = 0
        self.uncached_tokens = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def uncached(self, toks: list[str]) -> int:
        """Prompt tokens outside the cached block prefix; caches this prompt's blocks."""
        h = hashlib.sha256()
        hit, n_blocks = 0, len(toks) // BLOCK
        with self.lock:
            for b in range(n_blocks):
                h.update("\x00".join(toks[b * BLOCK:(b + 1) * BLOCK]).encode())
                key = h.digest()
                if key in self.cached and hit == b:
                    hit += 1
                self.cached.add(key)
        return len(toks) - hit * BLOCK


class _SimHandler(http.server.BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server: no TCP setup per request

    def log_message(self, *args):
        pass

    def do_GET(self):  # /stats: the counters, for the benchmark
        srv = self.server
        self._reply({"generated": srv.generated, "prompt": srv.prompt_tokens, "uncached": srv.uncached_tokens})

    def _reply(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = "\n".join(m["content"] for m in body["messages"])
        wide = "from 0 to 100" in prompt
        low, high = (0, 100) if wide else (1, 5)
        judged = body["messages"][-1]["content"].split("## The supporter", 1)[-1]
        judged = judged.split("\n\nReply with", 1)[0].split("\n\nExplain your", 1)[0]
        score = judged_score(judged, low, high)
        choice = {"index": 0, "finish_reason": "stop"}
        if body.get("logprobs"):
            value = int(round(score))
            content = str(value)
            if wide:  # split digits, as Qwen's tokenizer does
                digits = [(d, {d: 0.6, str(max(0, int(d) - 1)): 0.2, str(min(9, int(d) + 1)): 0.2}) for d in content]
            else:
                near = {str(v): math.exp(-abs(v - score) * 2) for v in range(low, high + 1)}
                digits = [(content, near)]
            choice["logprobs"] = {"content": [
                {"token": t, "logprob": math.log(alts[t] / sum(alts.values())) if t in alts else -1.0,
                 "top_logprobs": [{"token": a, "logprob": math.log(p / sum(alts.values()))} for a, p in alts.items()]}
                for t, alts in digits]}
            generated = len(digits)
        else:
            content = f"{RATIONALE}\nScore: {int(round(score))}" + ("/100" if wide else "")
            generated = len(tokens(content))
        choice["message"] = {"role": "assistant", "content": content}
        toks = tokens(prompt)
        with srv.slots:
            uncached = srv.uncached(toks)
            time.sleep((uncached * PREFILL_MS + generated * DECODE_MS) / 1e3)
        with srv.lock:
            srv.generated += generated
            srv.prompt_tokens += len(toks)
            srv.uncached_tokens += uncached
        self._reply({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice],
                     "usage": {"completion_tokens": generated}})


class Unordered(Judge):
    """Wraps a judge so that each prompt leads with the supporter's text (no shared prefix)."""

    def __init__(self, inner):
        self.inner = inner
        self.score_only = getattr(inner, "score_only", False)

    async def ascore(self, requests):
        moved = []
        for r in requests:
            *head, last = r.messages
            rubric, _, judged = last["content"].partition("## The supporter")
            moved.append(JudgeRequest(r.perspective, (*head, {**last, "content": "## The supporter" + judged
                                                              + "\n" + rubric})))
        return await self.inner.ascore(moved)


def batch(n_prompts: int, n_generations: int):
    prompts, completions, persona, scenario = [], [], [], []
    for i in range(n_prompts):
        for g in range(n_generations):
            prompts.append(f"I have been feeling overwhelmed at work, week {i}.")
            completions.append(f"## Analysis\nThe seeker {i} feels unseen, variant {g}.\n\n## Response\nThat sounds "
                               f"exhausting; it makes sense you feel worn down (reply {i}.{g}).")
            persona.append(f"a nurse on night shifts ({i})")
            scenario.append(f"a long stretch of double shifts, month {i % 7}")
    return prompts, completions, persona, scenario


def spearman(a, b) -> float:
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    ok = ~(torch.isnan(a) | torch.isnan(b))
    ra = a[ok].argsort().argsort().double()
    rb = b[ok].argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def _serve(port_queue) -> None:
    """A simulated judge server in its own process (its threads never share the client's GIL)."""
    server = SimServer()
    port_queue.put(server.server_address[1])
    server.serve_forever(poll_interval=0.05)


def run(scoring: str, ordered: bool, n_servers: int, data) -> dict:
    import multiprocessing as mp

    import httpx

    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    procs = [ctx.Process(target=_serve, args=(ports,), daemon=True) for _ in range(n_servers)]
    for p in procs:
        p.start()
    try:
        urls = [f"http://127.0.0.1:{ports.get(timeout=60)}/v1" for _ in procs]
        judge = OpenAIJudge(urls, "sim-judge", concurrency=BATCH * n_servers, timeout=300, scoring=scoring,
                            api_key_env="PYL2D_BENCH_NO_KEY")
        reward = PERMReward(judge if ordered else Unordered(judge))
        prompts, completions, persona, scenario = data
        t0 = time.perf_counter()
        rewards = reward(prompts=prompts, completions=completions, persona=persona, scenario=scenario)
        wall = time.perf_counter() - t0
        stats = [httpx.get(u.replace("/v1", "/stats"), timeout=10).json() for u in urls]
        return {"wall": wall, "generated": sum(s["generated"] for s in stats), "prompt": sum(s["prompt"] for s in stats),
                "uncached": sum(s["uncached"] for s in stats), "rewards": rewards,
                "invalid": sum(1 for r in rewards if math.isnan(r))}
    finally:
        for p in procs:
            p.kill()
            p.join()


class _CountingJudge(OpenAIJudge):
    """An OpenAIJudge that adds up each reply's usage (generated and prompt tokens)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.usage = {"completion_tokens": 0, "prompt_tokens": 0, "replies": 0}

    def _content(self, body, scoring):
        try:
            usage = json.loads(body).get("usage") or {}
            for k in ("completion_tokens", "prompt_tokens"):
                self.usage[k] += int(usage.get(k) or 0)
            self.usage["replies"] += 1
        except Exception:
            pass
        return super()._content(body, scoring)


def _cache_hits(log_path, start: int) -> tuple[int, int]:
    """(prompt tokens from the prefix cache, prompts) in llama-cpp-python's log after ``start``."""
    if not log_path:
        return -1, 0
    with open(log_path, errors="replace") as f:
        f.seek(start)
        hits = [int(m.group(1)) for m in re.finditer(r"Llama.generate: (\d+) prefix-match hit", f.read())]
    return sum(hits), len(hits)


def real_report(args) -> str:
    """Text vs logprob scoring against the real server ``args.server``."""
    import os as _os

    prompts, completions, persona, scenario = batch(args.prompts, args.generations)
    rows, results = [], {}
    for scoring in ("text", "logprobs"):
        judge = _CountingJudge(args.server, args.model, scoring=scoring, concurrency=args.concurrency,
                               timeout=600, max_tokens=args.max_tokens, api_key_env="PYL2D_BENCH_NO_KEY",
                               constraint=args.constraint if scoring == "logprobs" else None)
        reward = PERMReward(judge)
        start = _os.path.getsize(args.server_log) if args.server_log else 0
        t0 = time.perf_counter()
        rewards = reward(prompts=prompts, completions=completions, persona=persona, scenario=scenario)
        wall = time.perf_counter() - t0
        cached, n_logged = _cache_hits(args.server_log, start)
        scored = sum(1 for r in rewards if not math.isnan(r))
        results[scoring] = dict(wall=wall, rewards=rewards, scored=scored, **judge.usage, cached=cached,
                                fallback=judge.stats["text_fallback"])
        r = results[scoring]
        rows.append([scoring, f"{scored} of {len(rewards)}", f"{wall:.1f}", r["completion_tokens"], r["replies"],
                     r["fallback"], r["prompt_tokens"],
                     (f"{cached} ({cached / r['prompt_tokens']:.0%})" if cached >= 0 and r["prompt_tokens"]
                      else "not reported")])
    t, lp = results["text"], results["logprobs"]
    rho = spearman(t["rewards"], lp["rewards"])
    n = len(prompts)
    return (f"# PERM judging against a real server (issue 25)\n\n{_harness.machine_line('cpu')}; server "
            f"{shown(args.server)}, model {args.model!r}; one batch = {args.prompts} prompts x {args.generations} "
            f"completions x 4 perspectives ({n * 4} judge prompts); text max_tokens {args.max_tokens}, "
            f"concurrency {args.concurrency}; logprobs constraint {args.constraint}; command: "
            f"`python bench/perm_judging.py {' '.join(sys.argv[1:])}`.\n\n"
            + _harness.markdown_table(["scoring", "completions scored", "batch wall s", "generated judge tokens",
                                       "replies", "re-asked in text", "prompt tokens", "prompt tokens from cache"],
                                      rows)
            + f"\n\nlogprobs vs text: {_harness.ratio(t['completion_tokens'] / max(1, lp['completion_tokens']), 1)} "
              f"fewer generated tokens, {_harness.ratio(t['wall'] / lp['wall'], 1)} lower wall time; reward rank "
              f"agreement (Spearman, completions both scored) {rho:.3f} over {n} completions.\n")


def shown(url: str) -> str:
    from pyl2d.perm._http import shown_url

    return shown_url(url)


def report(args) -> str:
    if getattr(args, "server", None):
        return real_report(args)
    n_prompts, n_gen = (8, 4) if args.quick else (64, 8)
    data = batch(n_prompts, n_gen)
    rows, results = [], {}
    for scoring in ("text", "logprobs"):
        for ordered in (True, False):
            for n_servers in (1, 3):
                r = run(scoring, ordered, n_servers, data)
                results[(scoring, ordered, n_servers)] = r
    base = results[("text", False, 1)]
    for (scoring, ordered, n_servers), r in results.items():
        rows.append([scoring, "yes" if ordered else "no", n_servers, f"{r['wall']:.2f}",
                     _harness.ratio(base["wall"] / r["wall"], 1), r["generated"],
                     _harness.ratio(base["generated"] / r["generated"], 1),
                     f"{1 - r['uncached'] / r['prompt']:.0%}", r["invalid"]])
    rho = spearman(results[("text", True, 1)]["rewards"], results[("logprobs", True, 1)]["rewards"])
    n_requests = n_prompts * n_gen * 4
    client = httpx_module()
    return (f"# PERM judging at GRPO scale (issue 11)\n\n{_harness.machine_line('cpu')}; HTTP client "
            f"{client.__name__} {client.__version__}; simulated judge: "
            f"{BATCH} requests at once per server, {PREFILL_MS} ms per uncached prompt token, {DECODE_MS} ms per "
            f"generated token, prefix blocks of {BLOCK} tokens; one batch = {n_prompts} prompts x {n_gen} "
            f"generations x 4 perspectives = {n_requests} judge requests; command: "
            f"`python bench/perm_judging.py {' '.join(sys.argv[1:])}`.\n\n"
            "Speed-ups are against text scoring, unordered prompts, one server.\n\n"
            + _harness.markdown_table(["scoring", "prefix-ordered", "servers", "batch wall s", "vs text/unordered/1",
                                       "generated judge tokens", "fewer tokens", "prompt tokens cached",
                                       "unscorable"], rows)
            + f"\n\nAgreement of the two scorings' rewards (same simulated judge, ordered prompts, one server): "
              f"Spearman rank correlation {rho:.3f} over {n_prompts * n_gen} completions.\n")


if __name__ == "__main__":
    def _flags(parser):
        parser.add_argument("--server", default=None, help="a real judge server's API root (else the simulation)")
        parser.add_argument("--model", default="judge", help="the model name the server expects")
        parser.add_argument("--prompts", type=int, default=8)
        parser.add_argument("--generations", type=int, default=8)
        parser.add_argument("--max-tokens", type=int, default=512, help="text scoring's longest judgement")
        parser.add_argument("--concurrency", type=int, default=16)
        parser.add_argument("--constraint", default=None, help="logprobs scoring's grammar dialect (llama.cpp, vllm, "
                            "sglang; pyl2d.perm.score_constraint)")
        parser.add_argument("--server-log", default=None, help="llama.cpp server's log, for prefix-cache hits")

    sys.exit(_harness.main("perm_judging", __doc__, report, repeats=1, add_args=_flags))
