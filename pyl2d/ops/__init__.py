"""pyl2d's ops: each a ``torch.library`` custom op with a fake implementation, so
``torch.compile(fullgraph=True)`` traces through them, dispatching to the torch, cpu,
triton or cuda backend."""
from pyl2d.ops.aggregate_rewards import aggregate_rewards
from pyl2d.ops.group_advantages import group_advantages
from pyl2d.ops.local_topk import local_topk
from pyl2d.ops.pool_hidden import pool_hidden
from pyl2d.ops.pooled_score_topk import pooled_score_topk
from pyl2d.ops.rewards_and_advantages import rewards_and_advantages
from pyl2d.ops.score_from_hidden import score_from_hidden
from pyl2d.ops.score_topk import score_topk
from pyl2d.ops.segment_mean import segment_mean

__all__ = ["aggregate_rewards", "group_advantages", "local_topk", "pool_hidden", "pooled_score_topk", "rewards_and_advantages", "score_from_hidden", "score_topk", "segment_mean"]
