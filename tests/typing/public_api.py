"""Checked by ``mypy --strict`` (tools/typecheck.sh, in CI), never run: a user's code calling
each export of ``pyl2d/__init__.py`` with the types its annotations promise. An export whose
signature loses its types (an untyped parameter, a result of type Any) fails strict mode here.
"""
from __future__ import annotations

import torch

import pyl2d

q = torch.randn(2, 8)
items = torch.randn(10, 8)
mask = torch.ones(2, 3, dtype=torch.long)
hidden = torch.randn(2, 3, 8)

scores: torch.Tensor
ids: torch.Tensor
scores, ids = pyl2d.score_topk(q, items, 3, "l2", exclude=None, item_norms=None, backend=None)
scores, ids = pyl2d.local_topk(q, items, torch.arange(10) % 4, torch.randn(4, 8), 2, 5, "l2")
pooled: torch.Tensor = pyl2d.pool_hidden(hidden, mask, "mean", True)
scores, ids = pyl2d.pooled_score_topk(hidden, mask, items, 3, metric="ip", mode="last")
sums: torch.Tensor
counts: torch.Tensor
sums, counts = pyl2d.segment_mean(items, torch.arange(10) % 4, 4)
expected: torch.Tensor = pyl2d.score_from_hidden(q, torch.randn(20, 8), torch.arange(5), torch.arange(5.0))
rewards: torch.Tensor = pyl2d.aggregate_rewards(torch.rand(4, 3), mode="harmonic", score_max=5.0)
advantages: torch.Tensor = pyl2d.group_advantages(rewards, 2, eps=1e-4, scale="group")
rewards, advantages = pyl2d.rewards_and_advantages(torch.rand(4, 3), 2, bystander_coef=0.1)
pyl2d.clear_input_cache(q)
backends: list[str] = pyl2d.available_backends("cpu", op="score_topk")
names: tuple[str, ...] = tuple(pyl2d.BACKENDS)
version: str = pyl2d.__version__
