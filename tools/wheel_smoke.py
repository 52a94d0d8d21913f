"""Smoke test of an installed wheel (cibuildwheel's test-command): the compiled extension
loads, reports its CPU paths, and its top-k agrees with torch's on random data."""
import torch

import pyl2d
from pyl2d import _C

print(f"pyl2d {pyl2d.__version__}; CPU paths {_C.cpu_simd_supported()}, AMX {_C.cpu_amx_supported()}")
gen = torch.Generator().manual_seed(0)
queries, items = torch.randn(5, 64, generator=gen), torch.randn(1000, 64, generator=gen)
scores, ids = pyl2d.score_topk(queries, items, 10, "ip", backend="cpu")
want_scores, want_ids = (queries @ items.T).topk(10, dim=1)
torch.testing.assert_close(scores, want_scores, rtol=1e-4, atol=1e-4)
assert torch.equal(ids, want_ids), "top-10 ids differ from torch's"
print("wheel smoke test passed")
