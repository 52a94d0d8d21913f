"""The judge servers an ``OpenAIJudge`` spreads its requests over (one model each, e.g. a
vLLM replica per GPU): each request goes to the least-loaded healthy server; a server that
stops answering (no connection, a timeout, a 5xx) is benched for a cooldown that doubles
with each consecutive failure (up to ``max_cooldown``), so the retry goes elsewhere; after
the cooldown it takes requests again, and one success makes it healthy. When every server
is benched, the one whose cooldown ends first is tried."""
from __future__ import annotations

import collections
import dataclasses
import time


@dataclasses.dataclass
class Server:
    url: str  # the chat-completions URL
    in_flight: int = 0
    failures_in_a_row: int = 0
    benched_until: float = 0.0
    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class ServerPool:
    def __init__(self, urls: list[str], cooldown: float = 1.0, max_cooldown: float = 30.0):
        self.servers = [Server(u) for u in urls]
        self.cooldown, self.max_cooldown = float(cooldown), float(max_cooldown)

    def pick(self) -> Server:
        now = time.monotonic()
        healthy = [s for s in self.servers if s.benched_until <= now]
        if not healthy:
            return min(self.servers, key=lambda s: s.benched_until)
        return min(healthy, key=lambda s: (s.in_flight, s.counts["requests"]))

    def start(self, server: Server) -> None:
        server.in_flight += 1
        server.counts["requests"] += 1

    def done(self, server: Server, ok: bool, outcome: str) -> None:
        """A request to ``server`` ended: ``ok`` (an answer, good or not) or a server fault."""
        server.in_flight -= 1
        server.counts[outcome] += 1
        if ok:
            server.failures_in_a_row = 0
            server.benched_until = 0.0
            return
        server.failures_in_a_row += 1
        wait = min(self.max_cooldown, self.cooldown * 2 ** (server.failures_in_a_row - 1))
        server.benched_until = time.monotonic() + wait

    def all_benched(self) -> bool:
        now = time.monotonic()
        return all(s.benched_until > now for s in self.servers)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per server (shown URL, with its index where two show alike): requests and outcomes
        so far."""
        from pyl2d.perm._http import shown_url

        shown = [shown_url(s.url) for s in self.servers]
        return {(name if shown.count(name) == 1 else f"{name} [{i}]"): dict(s.counts)
                for i, (name, s) in enumerate(zip(shown, self.servers))}
