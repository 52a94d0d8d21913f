"""The local-aggregation stage with empty (-1) slots that pyl2d.distributed.local_topk runs
on each rank: the C++ kernel (CPU tensors) and the torch version (other devices) agree,
and both equal the single-device op when no slot is empty."""
import pytest
import torch

import pyl2d
from pyl2d import _ext
from pyl2d import distributed as pd
from pyl2d.ops.local_topk import _stages
from pyl2d.ops.local_topk import cpu as local_cpu
from pyl2d.ops.score_topk.cpu import score_topk as cpu_search

pytestmark = pytest.mark.skipif(_ext.load() is None, reason="pyl2d._C was not built")


def _case(seed, b=5, mem=60, n=13, d=8, m=12, k=6, metric="l2"):
    g = torch.Generator().manual_seed(seed)
    q, memory = torch.randn(b, d, generator=g), torch.randn(mem, d, generator=g)
    item_of = torch.randint(0, n - 1, (mem,), generator=g)
    reps = pyl2d.segment_mean(memory, item_of, n)[0]
    exclude = torch.randint(-1, n, (b, 3), generator=g)
    nearest = _stages.nearest_memory(q, memory, m, metric, cpu_search)
    cand = _stages.global_candidates(q, item_of, reps, k, m, metric, exclude, cpu_search)
    return q, memory, item_of, n, nearest, cand, k, metric, exclude


@pytest.mark.parametrize("metric", ("l2", "ip", "cosine"))
@pytest.mark.parametrize("seed", range(4))
def test_torch_stage_matches_the_kernel_with_empty_slots(metric, seed):
    q, memory, item_of, n, nearest, (cs, ci), k, _, exclude = _case(seed, metric=metric)
    holes = torch.rand(nearest.shape, generator=torch.Generator().manual_seed(seed)) < 0.4
    nearest = nearest.masked_fill(holes, -1)
    want = local_cpu.aggregate(q, memory, item_of, n, nearest, cs, ci, k, metric, exclude)
    got = pd._aggregate_torch(q, memory, item_of, n, nearest, cs, ci, k, metric, exclude)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)


def test_kernel_stage_without_holes_is_the_op():
    q, memory, item_of, n, nearest, (cs, ci), k, metric, exclude = _case(9)
    reps = pyl2d.segment_mean(memory, item_of, n)[0]
    want = pyl2d.local_topk(q, memory, item_of, reps, k, nearest.shape[1], metric, exclude, backend="cpu")
    got = local_cpu.aggregate(q, memory, item_of, n, nearest, cs, ci, k, metric, exclude)
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
