"""Judges: given judge prompts, return one score per prompt (NaN + a status when invalid).

- ``OpenAIJudge``: any OpenAI-compatible chat-completions server (vLLM, SGLang, hosted),
  async over httpx2 (or httpx) with bounded concurrency, a wall-clock deadline and a body-size cap per
  attempt, and retries with jittered exponential backoff on 429, 5xx, timeouts and connection
  errors. Every prompt of a batch (all perspectives of all completions) is in flight together,
  up to ``concurrency``. The API key is read from an environment variable at request time and
  is never stored, printed, logged or saved.
- ``ScriptedJudge``: returns scripted replies; for tests and dry runs.
- ``LocalJudge``: a ``transformers`` causal LM scoring from logits (G-Eval style): one forward
  pass, then ``score_from_hidden`` over the score tokens' LM-head rows.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import json
import math
import random
from typing import Callable, Mapping, Sequence

from pyl2d._checks import finite_number
from pyl2d.perm._http import (ResponseTooLarge, api_key, chat_completions_url, check_url, connect_reason, httpx_module,
                              read_body, shown_url)
from pyl2d.perm._servers import ServerPool
from pyl2d.perm.logprob_scores import expected_score
from pyl2d.perm.perspectives import Perspective
from pyl2d.perm.score_constraint import CONSTRAINTS, constraint_fields
from pyl2d.perm.scores import ERROR, MISSING, OK, TRUNCATED, ParsedScore

logger = logging.getLogger("pyl2d.perm")

# Statuses of a judge call that failed (no answer to score), besides "error":
TIMEOUT = "timeout"            # an attempt ran past its deadline
UNAUTHORIZED = "unauthorized"  # the server refused the API key (HTTP 401 / 403)
UNREACHABLE = "unreachable"    # no connection to the server
FAILED = frozenset({ERROR, TIMEOUT, UNAUTHORIZED, UNREACHABLE})
FATAL = frozenset({UNAUTHORIZED, UNREACHABLE})  # the judge as a whole is unusable
MAX_RESPONSE_BYTES = 4 * 2 ** 20
SCORINGS = ("text", "logprobs")
# Tokens a score-only reply needs at most ("100", possibly a space and one digit per token).
LOGPROB_MAX_TOKENS = 4


@dataclasses.dataclass(frozen=True)
class JudgeRequest:
    """One judge prompt: the perspective it scores for and its chat messages."""

    perspective: Perspective
    messages: tuple[Mapping[str, str], ...]


def run_sync(coroutine_factory: Callable[[], "asyncio.Future"]):
    """Run a coroutine to completion from sync code, also when called inside a running event
    loop (a notebook, an async trainer): then it runs on a fresh loop in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine_factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()


class Judge:
    """Base class: subclasses implement ``ascore``; ``score`` is its sync wrapper."""

    async def ascore(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        raise NotImplementedError

    def score(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        requests = list(requests)
        if not requests:
            return []
        return run_sync(lambda: self.ascore(requests))


class TextJudge(Judge):
    """A judge that answers in text; scores are parsed strictly (see ``pyl2d.perm.scores``)."""

    async def complete(self, request: JudgeRequest) -> tuple[str | None, str]:
        """(reply text or None, status): status is "ok" or why there is no text."""
        raise NotImplementedError

    async def ascore(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        return self.parse(requests, await asyncio.gather(*(self.complete(r) for r in requests)))

    @staticmethod
    def parse(requests: Sequence[JudgeRequest], replies) -> list[ParsedScore]:
        out = []
        for request, (text, status) in zip(requests, replies):
            if status != OK:
                out.append(ParsedScore(math.nan, status))
            else:
                p = request.perspective
                out.append(p.parse(text))
        return out


class ScriptedJudge(TextJudge):
    """Replies from a script: a callable ``(request) -> str``, a mapping from perspective name
    to a reply (or a list of replies used in turn), or one reply for everything. A callable
    may raise to simulate a failed call (status "error"). ``calls`` records every request."""

    def __init__(self, script: Callable[[JudgeRequest], str] | Mapping[str, str | Sequence[str]] | str,
                 delay: float = 0.0):
        self.script = script
        self.delay = float(delay)
        self.calls: list[JudgeRequest] = []
        self._turn: collections.Counter = collections.Counter()

    async def complete(self, request: JudgeRequest) -> tuple[str | None, str]:
        self.calls.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            if callable(self.script):
                return self.script(request), OK
            if isinstance(self.script, str):
                return self.script, OK
            reply = self.script[request.perspective.name]
            if not isinstance(reply, str):
                i = self._turn[request.perspective.name]
                self._turn[request.perspective.name] += 1
                reply = reply[i % len(reply)]
            return reply, OK
        except Exception as exc:  # a scripted failure
            logger.debug("scripted judge failed: %s", type(exc).__name__)
            return None, ERROR


class OpenAIJudge(TextJudge):
    """An OpenAI-compatible chat-completions judge over HTTP.

    Args:
        base_url: the API root, e.g. "http://127.0.0.1:8000/v1" (``/chat/completions`` is appended
            unless already there), or a list of them: servers of the same model, each request
            sent to the least-loaded healthy one, a failing one benched for ``server_cooldown``
            seconds (doubling while it keeps failing) and retried elsewhere
            (``pyl2d/perm/_servers.py``; ``server_stats`` counts per server).
        model: the model name the server expects.
        api_key_env: name of the environment variable holding the API key (read per request;
            unset or empty means no Authorization header, as for a local vLLM).
        concurrency: most requests in flight at once.
        timeout: wall-clock seconds per request attempt: connecting, sending and reading the
            whole body (a server dripping its reply byte by byte is cut off, too).
        max_retries: retries after the first attempt on 429, 5xx, timeouts and connection errors.
        max_response_bytes: cap on a reply body after decompression; a longer one is an error
            (not retried), read no further.
        backoff, max_backoff: the n-th retry waits uniform(0.5, 1) * min(max_backoff, backoff * 2**n)
            seconds, or the server's Retry-After when it is given and no longer than max_backoff.
        temperature, max_tokens, extra_body: sent with every request (extra_body is merged in).
        scoring: "text" (the judge writes a judgement ending in "Score: N", parsed strictly)
            or "logprobs" (the judge is asked for the number only, in at most
            LOGPROB_MAX_TOKENS tokens, and the score is the expectation over the score
            tokens' probabilities at the first position where a digit appears, sampled or
            not: pyl2d.perm.logprob_scores). A prompt the server answers without logprobs
            (``transformers serve`` ignores them), or whose logprobs hold no score, is asked
            again for a judgement ending in "Score: N" (text scoring), with one warning per
            judge for a server that sends no logprobs; ``stats["text_fallback"]`` counts them.
        top_logprobs: how many alternatives per position the server returns (logprobs scoring).
        constraint: logprobs scoring on a server that decodes under a grammar: its dialect
            ("llama.cpp", "vllm", "sglang": pyl2d.perm.score_constraint), so that every
            score-only reply is an integer of its perspective's range (a small judge otherwise
            starts with a word, and a 0-100 total split into digits is then re-asked in text).
            None (the default, and for OpenAI's API): unconstrained.

    The requests of a batch are sent in the order of their messages (sorted), so consecutive
    prompts share the longest prefix a server can keep cached (one perspective's rubric, then
    one seeker's context, then the judged text; llama.cpp's server keeps the previous prompt's
    tokens and re-evaluates only what follows the common prefix: bench/results/perm_judging_*).

    ``fatal`` holds, after a batch, why the judge as a whole was unusable (the key refused, no
    connection), else None; ``stats`` counts retries and failures.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 16,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 0.5, max_backoff: float = 30.0,
                 temperature: float = 0.0, max_tokens: int = 512, extra_body: Mapping | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, scoring: str = "text", top_logprobs: int = 20,
                 server_cooldown: float = 1.0, constraint: str | None = None):
        finite_number("server_cooldown", server_cooldown, nonnegative=True)
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}; got {scoring!r}")
        if constraint is not None and constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {', '.join(CONSTRAINTS)} or None, got {constraint!r}")
        if constraint is not None and scoring != "logprobs":
            raise ValueError(f"constraint={constraint!r} applies to scoring='logprobs' (a text judgement is free text)")
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 1 <= top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be an int from 1 to 20, got {top_logprobs!r}")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        finite_number("timeout", timeout, positive=True)
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be a positive int, got {max_response_bytes!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):  # inf: a Retry-After could hang us
            finite_number(name, value, nonnegative=True)
        try:
            json.dumps(dict(extra_body or {}), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra_body must be a JSON object (a mapping of JSON values): {exc}") from None
        if not isinstance(api_key_env, str) or not api_key_env:
            raise ValueError("api_key_env must name an environment variable")
        api_key(api_key_env)  # a malformed key is an error now, not a leaked header later
        if isinstance(base_url, str) or not isinstance(base_url, (list, tuple)):
            urls = [base_url]
        else:
            urls = list(base_url)
        if not urls:
            raise ValueError("base_url must be a URL or a non-empty list of URLs")
        for i, u in enumerate(urls):
            check_url(u, "base_url" if len(urls) == 1 and u is base_url else f"base_url[{i}]")
        chat = [chat_completions_url(u) for u in urls]
        self.url = chat[0]
        self.pool = ServerPool(chat, cooldown=server_cooldown, max_cooldown=max(server_cooldown, max_backoff))
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_response_bytes = max_response_bytes
        self.scoring = scoring
        self.constraint = constraint
        self.text_body = {"temperature": temperature, "max_tokens": max_tokens, **dict(extra_body or {})}
        if scoring == "logprobs":
            self.body = {"temperature": temperature, "max_tokens": LOGPROB_MAX_TOKENS, "logprobs": True,
                         "top_logprobs": top_logprobs, **dict(extra_body or {})}
        else:
            self.body = self.text_body
        self._warned_no_logprobs = False
        self.stats: collections.Counter = collections.Counter()
        self.fatal: str | None = None

    def __repr__(self) -> str:
        urls = [shown_url(s.url) for s in self.pool.servers]
        return (f"OpenAIJudge(url={urls[0] if len(urls) == 1 else urls!r}, model={self.model!r}, api_key_env={self.api_key_env!r}, "
                f"concurrency={self.concurrency}, timeout={self.timeout}, max_retries={self.max_retries})")

    def _headers(self) -> dict[str, str]:
        key = api_key(self.api_key_env)
        headers = {"Accept-Encoding": "gzip, deflate"}  # what read_body decodes, capped
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                wait = float(retry_after)
                if 0 <= wait <= self.max_backoff:
                    return wait
            except ValueError:
                pass
        return random.uniform(0.5, 1.0) * min(self.max_backoff, self.backoff * 2 ** attempt)

    async def ascore(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        httpx = httpx_module()
        headers = self._headers()
        self.fatal = None
        semaphore = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        # Sent in message order (asyncio's semaphore is first come, first served), answered in
        # the caller's order.
        order = sorted(range(len(requests)), key=lambda i: _prompt_key(requests[i]))
        async with httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), limits=limits) as client:
            sent = await asyncio.gather(*(self.post(client, semaphore, requests[i], headers) for i in order))
            replies: list = [None] * len(requests)
            for i, reply in zip(order, sent):
                replies[i] = reply
            scores = self.parse(requests, replies)
            if self.scoring == "logprobs":
                await self._ask_in_text(client, semaphore, headers, requests, replies, scores)
        return scores

    async def _ask_in_text(self, client, semaphore, headers, requests, replies, scores) -> None:
        """Re-ask, in text scoring, the prompts answered without logprobs or with logprobs that
        hold no score (``scores`` updated in place)."""
        again = []
        for i, (request, (reply, status), score) in enumerate(zip(requests, replies, scores)):
            if status != OK or not (reply[1] is None or score.status == MISSING):
                continue
            messages = request.perspective.text_messages(request.messages)
            if messages is not None:
                again.append((i, JudgeRequest(request.perspective, tuple(messages))))
        if not again:
            return
        self.stats["text_fallback"] += len(again)
        again.sort(key=lambda item: _prompt_key(item[1]))
        texts = await asyncio.gather(*(self.post(client, semaphore, r, headers, self.text_body, "text")
                                       for _, r in again))
        for (i, _), parsed in zip(again, TextJudge.parse([r for _, r in again], texts)):
            scores[i] = parsed

    async def _attempt(self, client, url: str, payload: dict, headers: dict) -> tuple[int, str | None, bytes | None]:
        """One HTTP exchange: (status code, Retry-After, body of a 2xx reply, capped)."""
        async with client.stream("POST", url, json=payload, headers=headers) as resp:
            if not 200 <= resp.status_code < 300:
                return resp.status_code, resp.headers.get("retry-after"), None
            return resp.status_code, None, await read_body(resp, self.max_response_bytes)

    def _give_up(self, status: str, message: str, stat: str | None = None) -> tuple[None, str]:
        """A prompt that fails without retrying; a fatal status also sets ``fatal``."""
        self.stats[stat or status] += 1
        if status in FATAL and self.fatal is None:
            self.fatal = message
            logger.error("%s", message)
        else:
            logger.warning("judge request failed: %s (not retried)", message)
        return None, status

    async def post(self, client, semaphore: asyncio.Semaphore, request: JudgeRequest, headers: dict[str, str],
                   body: Mapping | None = None, scoring: str | None = None) -> tuple[object, str]:
        """One request with retries; (reply or None, status). ``body`` and ``scoring`` default
        to the judge's own (the text fallback of logprobs scoring passes the text ones)."""
        httpx = httpx_module()

        scoring = scoring or self.scoring
        payload = {"model": self.model, "messages": [dict(m) for m in request.messages],
                   **(body or self._body(request))}
        failure = ERROR
        for attempt in range(self.max_retries + 1):
            retry_after = None
            server = self.pool.servers[0]
            url = shown_url(server.url)
            answered = False  # the server answered (well or not): not a server fault
            started = []  # the server taken for this attempt, once the slot is held

            def release(ok: bool, outcome: str) -> None:
                if started:
                    self.pool.done(started.pop(), ok, outcome)
            try:
                async with semaphore:  # released while backing off
                    # Chosen once a slot is free, so the choice knows of the failures so far.
                    server = self.pool.pick()
                    url = shown_url(server.url)
                    self.pool.start(server)
                    started.append(server)
                    code, retry_after, body = await asyncio.wait_for(
                        self._attempt(client, server.url, payload, headers), self.timeout)
            except httpx.ConnectError as exc:
                failure, reason = UNREACHABLE, f"could not connect to judge at {url} ({connect_reason(exc)})"
            except httpx.ConnectTimeout:
                failure, reason = UNREACHABLE, f"could not connect to judge at {url} (timed out)"
            except (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException):  # distinct before Python 3.11
                failure, reason = TIMEOUT, f"timed out after {self.timeout:g} s"
            except httpx.TransportError as exc:
                failure, reason = ERROR, f"connection error ({type(exc).__name__})"
            except ResponseTooLarge:
                release(True, "too_large")
                return self._give_up(ERROR, f"reply body over max_response_bytes={self.max_response_bytes}",
                                     "too_large")
            except BaseException as exc:  # anything else fails this prompt only, never the batch
                release(True, "error")
                if not isinstance(exc, Exception):
                    raise
                return self._give_up(ERROR, type(exc).__name__)
            else:
                answered = not (code == 429 or code >= 500)
                if not answered:
                    failure, reason = ERROR, f"HTTP {code}"
                elif code in (401, 403):
                    release(True, "unauthorized")
                    hint = "" if "Authorization" in headers else f"; {self.api_key_env} is not set"
                    return self._give_up(UNAUTHORIZED, f"judge at {url} refused the API key (HTTP {code}){hint}")
                elif not 200 <= code < 300:
                    release(True, "http_error")
                    self.stats["http_error"] += 1
                    logger.warning("judge request rejected: HTTP %d (not retried)", code)
                    return None, ERROR
                else:
                    reply = self._content(body, scoring)
                    if reply[1] != ERROR:
                        release(True, reply[1])
                        if reply[1] == TRUNCATED:
                            self.stats[TRUNCATED] += 1
                        return reply
                    # A 2xx without a chat completion in it is the server's fault, like a 5xx:
                    # bench that server and retry (elsewhere when there are several).
                    answered, failure, reason = False, ERROR, "a malformed chat-completions body"
            release(answered, failure)
            self.stats[failure] += 1
            if attempt < self.max_retries:
                self.stats["retries"] += 1
                logger.debug("judge request %s; retry %d of %d", reason, attempt + 1, self.max_retries)
                if len(self.pool.servers) == 1 or self.pool.all_benched():  # else: at once, elsewhere
                    await asyncio.sleep(self._delay(attempt, retry_after))
        if failure in FATAL and self.fatal is None and self.pool.all_benched():
            self.fatal = reason if len(self.pool.servers) == 1 else f"no judge server answers (last: {reason})"
        logger.warning("judge request failed after %d attempts: %s", self.max_retries + 1, reason)
        return None, failure

    def _body(self, request: JudgeRequest) -> Mapping:
        """The judge's own request fields for ``request``: with a constraint, the grammar of
        its perspective's score range."""
        if self.constraint is None:
            return self.body
        p = request.perspective
        return {**self.body, **constraint_fields(self.constraint, p.score_min, p.score_max)}

    @property
    def server_stats(self) -> dict[str, dict[str, int]]:
        """Requests and outcomes per judge server (URLs shown without credentials)."""
        return self.pool.stats()

    @property
    def score_only(self) -> bool:
        """Whether prompts should ask for the number alone (logprobs scoring)."""
        return self.scoring == "logprobs"

    def _content(self, body: bytes, scoring: str) -> tuple[object, str]:
        """(reply, "ok"): the text, or for logprobs scoring (text, logprobs content or None)."""
        try:
            choice = json.loads(body)["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not text")
            if scoring != "logprobs":
                # A score-only reply (logprobs) is cut at its few tokens on purpose; a judgement is not.
                return (text, TRUNCATED) if choice.get("finish_reason") == "length" else (text, OK)
            content = (choice.get("logprobs") or {}).get("content")
            return (text, content if isinstance(content, list) else None), OK
        except Exception:
            self.stats["bad_response"] += 1
            return None, ERROR

    def parse(self, requests: Sequence[JudgeRequest], replies) -> list[ParsedScore]:
        if self.scoring != "logprobs":
            return TextJudge.parse(requests, replies)
        out = []
        for request, (reply, status) in zip(requests, replies):
            p = request.perspective
            if status != OK:
                out.append(ParsedScore(math.nan, status))
                continue
            text, content = reply
            if content is None:
                if not self._warned_no_logprobs:
                    self._warned_no_logprobs = True
                    logger.warning("judge at %s returned no logprobs: asking again for judgements in text "
                                   "(text scoring) instead", shown_url(self.url))
                self.stats["no_logprobs"] += 1
                out.append(p.parse(text))  # kept where it cannot be re-asked
                continue
            try:
                out.append(expected_score(content, p.score_min, p.score_max))
            except (AttributeError, TypeError, ValueError, ArithmeticError):  # a malformed logprobs list
                self.stats["bad_response"] += 1
                out.append(ParsedScore(math.nan, ERROR))
        return out


def _prompt_key(request: JudgeRequest) -> tuple:
    """Sort key of a request: its messages in order, so sorted prompts share prefixes."""
    return tuple((str(m.get("role", "")), str(m.get("content", ""))) for m in request.messages)


class LocalJudge(Judge):
    """A local ``transformers`` causal LM judge scoring from logits, not text.

    The judge prompt is rendered with the tokenizer's chat template, followed by
    ``answer_prefix`` (so the next token is the score); one forward pass gives the final hidden
    state, and ``score_from_hidden`` returns sum_s p(s) * s over the score tokens, p being the
    softmax over those tokens only. Every integer of a perspective's range must be a single token
    ("1".."5" are in every common vocabulary; a 0-100 bystander scale usually is not, so pass
    ``perspectives`` with a coarser bystander or drop it). The score tokens' logits are the
    model's own: an LM-head bias, logit scaling and final soft-capping are applied as its
    forward applies them (``logit_terms``)."""

    def __init__(self, model, tokenizer, *, batch_size: int = 8, max_length: int = 4096,
                 answer_prefix: str = "Score: ", backend: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.answer_prefix = answer_prefix
        self.backend = backend
        self._score_tokens: dict[tuple[int, int], tuple] = {}

    def __repr__(self) -> str:
        return f"LocalJudge(model={type(self.model).__name__}, batch_size={self.batch_size})"

    def score_tokens(self, perspective: Perspective):
        """(token ids [S] int64, values [S] float32) of the perspective's score range."""
        import torch

        key = (perspective.score_min, perspective.score_max)
        if key not in self._score_tokens:
            ids, values = [], []
            for v in range(perspective.score_min, perspective.score_max + 1):
                toks = self.tokenizer.encode(str(v), add_special_tokens=False)
                if len(toks) != 1:
                    raise ValueError(f"perspective {perspective.name!r}: score {v} is not a single token for this "
                                     f"tokenizer ({toks}); LocalJudge needs single-token scores")
                ids.append(toks[0])
                values.append(float(v))
            self._score_tokens[key] = (torch.tensor(ids), torch.tensor(values))
        return self._score_tokens[key]

    def prompt(self, request: JudgeRequest) -> str:
        text = self.tokenizer.apply_chat_template([dict(m) for m in request.messages], tokenize=False,
                                                  add_generation_prompt=True)
        return text + self.answer_prefix

    def final_hidden(self, prompts: list[str]):
        """[B, D] final-norm hidden state at each prompt's last token (left padding)."""
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length, padding_side="left", add_special_tokens=False)
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        # Positions count real tokens only, so a left-padded prompt scores as it would alone.
        positions = (enc["attention_mask"].cumsum(-1) - 1).clamp_min(0)
        with torch.no_grad():
            out = self.model.get_decoder()(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                           position_ids=positions)
        return out.last_hidden_state[:, -1]

    def logit_terms(self) -> dict:
        """What the model's own forward applies to ``hidden @ head.T`` beyond the product: the
        LM head's bias (Phi), a logit scale (Cohere multiplies by ``logit_scale``), a divisor
        (Granite's ``logits_scaling``) and a final soft cap (Gemma 2/3:
        ``cap * tanh(logits / cap)``). Empty for the models whose logits are the product."""
        config = getattr(self.model, "config", None)
        bias = getattr(self.model.get_output_embeddings(), "bias", None)
        terms = {"bias": bias,
                 "scale": getattr(config, "logit_scale", None),
                 "divide": getattr(config, "logits_scaling", None),
                 "softcap": getattr(config, "final_logit_softcapping", None)}
        return {k: v for k, v in terms.items() if v is not None and not (k in ("scale", "divide") and v == 1)}

    @staticmethod
    def _expected(hidden, head, ids, values, terms: dict):
        """sum_s p(s) * s with the model's own logits for the score tokens (see logit_terms)."""
        import torch

        logits = hidden.float() @ head[ids].float().T
        if terms.get("bias") is not None:
            logits = logits + terms["bias"][ids].float()
        if "scale" in terms:
            logits = logits * float(terms["scale"])
        if "divide" in terms:
            logits = logits / float(terms["divide"])
        if "softcap" in terms:
            cap = float(terms["softcap"])
            logits = torch.tanh(logits / cap) * cap
        return torch.softmax(logits, dim=1) @ values.float()

    def score_sync(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        from pyl2d.ops.score_from_hidden import score_from_hidden

        head = self.model.get_output_embeddings().weight
        terms = self.logit_terms()
        out: list[ParsedScore] = [ParsedScore(math.nan, ERROR)] * len(requests)
        by_range = collections.defaultdict(list)
        for i, r in enumerate(requests):
            by_range[(r.perspective.score_min, r.perspective.score_max)].append(i)
        for rows in by_range.values():
            ids, values = self.score_tokens(requests[rows[0]].perspective)
            for b0 in range(0, len(rows), self.batch_size):
                chunk = rows[b0:b0 + self.batch_size]
                hidden = self.final_hidden([self.prompt(requests[i]) for i in chunk]).to(head.dtype)
                ids_d, values_d = ids.to(head.device), values.to(head.device)
                if terms:  # a few score tokens: their exact logits in torch
                    scores = self._expected(hidden, head, ids_d, values_d, terms)
                else:  # logits = hidden @ head.T: the fused op
                    scores = score_from_hidden(hidden, head, ids_d, values_d, backend=self.backend)
                for i, s in zip(chunk, scores.tolist()):
                    out[i] = ParsedScore(s, OK) if math.isfinite(s) else ParsedScore(math.nan, ERROR)
        return out

    async def ascore(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        """In a worker thread, so an async trainer's event loop keeps running meanwhile."""
        return await asyncio.to_thread(self.score_sync, list(requests))

    def score(self, requests: Sequence[JudgeRequest]) -> list[ParsedScore]:
        return self.score_sync(list(requests))
