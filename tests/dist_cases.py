"""What each rank runs in tests/distributed (spawned processes import this by name): the
sharded ops against the single-device op on the whole data, which every rank also computes,
so each rank checks its own result exactly (ids and scores bit for bit)."""
from __future__ import annotations

import torch

import pyl2d
import pyl2d.distributed as pd
from helpers import integer_tie_case


def _same(got, want, what):
    (gs, gi), (ws, wi) = got, want
    assert torch.equal(gi, wi), f"{what}: ids differ\n{gi}\n{wi}"
    assert torch.equal(gs, ws), f"{what}: scores differ\n{gs}\n{ws}"


def _data(kind, n, d, b, metric, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":
        x, q = integer_tie_case(23, d, b, g, metric=metric)
        x = x[torch.randint(0, 23, (n,), generator=g)]  # many exact duplicates across shards
        return q, x
    return torch.randn(b, d, generator=g), torch.randn(n, d, generator=g)


def _splits(n, world, rank, uneven):
    """[begin, end) of rank's rows: even, or uneven with rank 0 holding none."""
    if not uneven:
        return pd.shard_bounds(n, world, rank)
    cuts = [0, 0] + [n * (i + 1) // (world * 2) + 3 for i in range(world - 2)] + [n]
    cuts = sorted(min(c, n) for c in cuts)[:world + 1]
    return cuts[rank], cuts[rank + 1]


def score_topk_cases(rank, world):
    done = 0
    for kind in ("random", "ties"):
        for metric in ("ip", "l2", "cosine"):
            for uneven in (False, True):
                n, b = 61, 5
                q, x = _data(kind, n, 16, b, metric, seed=done)
                exclude = torch.tensor([[3, 60, -1], [-1, -1, -1], [0, 1, 2], [59, 59, 7], [10, 11, 12]])
                lo, hi = _splits(n, world, rank, uneven)
                for k in (1, 7, n):
                    for ex in (None, exclude):
                        want = pyl2d.score_topk(q, x, k, metric, ex, backend="cpu")
                        got = pd.score_topk(q, x[lo:hi], k, metric, ex)
                        _same(got, want, f"score_topk {kind} {metric} uneven={uneven} k={k} exclude={ex is not None}")
                        mine = torch.arange(rank, n, world)  # items dealt out by id modulo W
                        got = pd.score_topk(q, x[mine], k, metric, ex, local_ids=mine)
                        _same(got, want, f"score_topk local_ids {kind} {metric} k={k} exclude={ex is not None}")
                        done += 1
    return done


def _memory(kind, n_mem, n_items, d, b, metric, seed):
    g = torch.Generator().manual_seed(seed)
    q, mem = _data(kind, n_mem, d, b, metric, seed)
    item_of = torch.randint(0, n_items - 2, (n_mem,), generator=g)  # the last two items: no memory
    reps = pyl2d.segment_mean(mem, item_of, n_items)[0]
    return q, mem, item_of, reps


def local_topk_cases(rank, world):
    done = 0
    for kind in ("random", "ties"):
        for metric in ("l2", "ip"):
            n_mem, n_items, b = 80, 17, 4
            q, mem, item_of, reps = _memory(kind, n_mem, n_items, 12, b, metric, seed=100 + done)
            items, rows = pd.partition_by_item(item_of, n_items, world, rank)
            exclude = torch.tensor([[0, 5, -1], [-1, -1, -1], [16, 15, 3], [1, 2, 4]])
            for k, m in ((1, 1), (5, 9), (n_items, n_mem), (3, 40)):
                for ex in (None, exclude):
                    want = pyl2d.local_topk(q, mem, item_of, reps, k, m, metric, ex, backend="cpu")
                    got = pd.local_topk(q, mem[rows], item_of[rows], rows, items, reps[items], k, m, metric, ex)
                    _same(got, want, f"local_topk {kind} {metric} k={k} m={m} exclude={ex is not None}")
                    done += 1
    return done


def disagreement(rank, world):
    """Ranks passing different k (or one rank's bad input) all get the same clear error."""
    q, x = torch.randn(3, 8), torch.randn(10, 8)
    errors = []
    for k, items in ((2 + rank, x), (2, x if rank else torch.randn(10, 9))):
        try:
            pd.score_topk(q, items, k)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def gather(rank, world):
    local = torch.full((rank, 2), float(rank))  # rank r holds r rows (rank 0: none)
    rows, counts = pd.gather_rows(local)
    return rows.tolist(), counts


def one_rank_bad(rank, world):
    """Bad input on one rank only (a numpy array, a dtype or rank of tensor the others do not
    pass): every rank gets a ValueError at once, none is left waiting or killed by gloo."""
    import numpy as np

    errors = []
    cases = [lambda: pd.gather_rows(torch.zeros(2, 3, dtype=torch.float16 if rank else torch.float32)),
             lambda: pd.gather_rows(torch.zeros(2, 3) if rank else torch.zeros(2)),
             lambda: pd.gather_rows(torch.zeros(2, 3) if rank else np.zeros((2, 3))),
             lambda: pd.local_topk(torch.randn(2, 4), torch.randn(3, 4), torch.tensor([0, 0, 1]),
                                   torch.arange(3), torch.tensor([0, 1]).numpy() if rank else torch.tensor([0, 1]),
                                   torch.randn(2, 4), 1, 1)]
    for case in cases:
        try:
            case()
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def sharded_bad_input(rank, world, model_dir):
    """The sharded recommender with bad input on one rank (at construction, in recommend),
    and with no query on any rank: the same clear error, or an empty result, on every rank."""
    from pyl2d.l2d.decode.sharded import ShardedL2DRecommender

    model, tok, data, _ = _tiny(model_dir)
    from pyl2d.l2d.memory import ItemMemory

    memory = ItemMemory(torch.randn(6, model.config.hidden_size), torch.tensor([0, 0, 2, 2, 4, 4]), 40,
                        {"model_fingerprint": "x", "template": None})
    out = []
    try:
        ShardedL2DRecommender(model, tok, memory, data.catalog, check_model=False, m=0 if rank else 2)
    except ValueError as exc:
        out.append(str(exc))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = ShardedL2DRecommender(model, tok, memory, data.catalog, check_model=False)
    for k in (5, 0):
        try:
            rec.recommend([[1, 2]], k=k if rank else 5)
            out.append("no error")
        except ValueError as exc:
            out.append(str(exc))
    out.append(tuple(rec.recommend([], k=3).ids.shape))
    # A catalog item with no memory entry, above every item that has one, is a valid history.
    out.append(rec.recommend([[39]], k=3).ids.tolist())
    return out


# -- L2D: the distributed memory build and the sharded recommender ---------------------------
def _tiny(model_dir):
    from pyl2d.l2d.model.hidden import HiddenStateExtractor, load_model
    from pyl2d.l2d.data.synthetic import make_synthetic

    model, tok = load_model(str(model_dir), device="cpu")
    data = make_synthetic(n_items=40, n_users=40, min_len=4, max_len=7, seed=3)
    return model, tok, data, HiddenStateExtractor(model, tok, batch_size=8, progress=False)


def build(rank, world, model_dir, path, shard_size, die_at=None):
    """Build the tiny memory on every rank; ``die_at`` = (rank, nth encode call): that rank
    is killed (os._exit) there, as a preempted job would be."""
    import os

    from pyl2d.l2d.memory import build_memory
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT

    model, tok, data, ex = _tiny(model_dir)
    calls = []
    real = ex.encode_ids

    def encode(seqs, desc=""):
        calls.append(desc)
        if die_at is not None and rank == die_at[0] and len(calls) == die_at[1]:
            os._exit(17)
        return real(seqs, desc)
    ex.encode_ids = encode
    memory = build_memory(ex, data.train, len(data.catalog), path, DEFAULT_PROMPT, shard_size=shard_size,
                          log=lambda *_: None)
    return calls, memory.vectors.clone(), memory.item_ids.clone()


def sharded_recommend(rank, world, model_dir, memory_path, data_dir, n_queries, options):
    """This rank's share of the first n_queries test samples through the sharded recommender:
    per option, its recommendations and the query vectors it encoded (the one-process
    reference ranks exactly these vectors, as encoding depends on the batch's padding)."""
    from pyl2d.l2d.data.folders import load_folder
    from pyl2d.l2d.model.hidden import load_model
    from pyl2d.l2d.memory import ItemMemory
    from pyl2d.l2d.decode.sharded import ShardedL2DRecommender

    model, tok = load_model(str(model_dir), device="cpu")
    data = load_folder(data_dir)
    memory = ItemMemory.load(memory_path)
    lo, hi = pd.shard_bounds(n_queries, world, rank)
    out = {}
    for name, kwargs in options.items():
        rec = ShardedL2DRecommender(model, tok, memory, data.catalog, progress=False, **kwargs)
        got = rec.recommend(data.test[lo:hi], k=20)
        out[name] = (got.ids.tolist(), rec.encode(data.test[lo:hi]) if hi > lo else None, rec.transform)
    return out


def nccl_cases(rank, world, device_type="cuda"):
    """The sharded ops on CUDA tensors over NCCL (one GPU per rank; or gloo) against the
    one-GPU op. ``device_type="cpu"`` runs the same cases on CPU tensors over gloo, so that
    this function is checked where no GPU is (tests/gpu/test_owed_paths.py)."""
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    done = 0
    for metric in ("ip", "l2"):
        q, x = _data("ties", 300, 16, 7, metric, seed=done)
        q, x = q.to(device), x.to(device)
        lo, hi = pd.shard_bounds(300, world, rank)
        for k in (1, 10, 300):
            want = pyl2d.score_topk(q, x, k, metric)
            got = pd.score_topk(q, x[lo:hi], k, metric)
            assert torch.equal(got[1], want[1]), f"nccl score_topk {metric} k={k}"
            done += 1
        qm, mem, item_of, reps = _memory("ties", 200, 17, 12, 4, metric, seed=7)
        qm, mem, item_of, reps = qm.to(device), mem.to(device), item_of.to(device), reps.to(device)
        items, rows = pd.partition_by_item(item_of, 17, world, rank)
        want = pyl2d.local_topk(qm, mem, item_of, reps, 5, 20, metric)
        got = pd.local_topk(qm, mem[rows], item_of[rows], rows, items, reps[items], 5, 20, metric)
        assert torch.equal(got[1], want[1]), f"nccl local_topk {metric}"
        done += 1
    return done


def shared_ids(rank, world):
    """An id held by two ranks (issue 23 item 4), and k=3.0 on one rank (item 5): the same
    clear error on every rank, where the first returned duplicate ids and the second named a
    placeholder value."""
    g = torch.Generator().manual_seed(0)  # the same queries on every rank
    q, x = torch.randn(2, 4, generator=g), torch.randn(4, 4, generator=g)
    cases = [  # (local_ids per rank, k per rank, exclude per rank)
        ((torch.tensor([0, 4, 6, 9]), torch.tensor([2, 4, 7, 8])), (6, 6), (None, None)),  # modulo-like overlap
        ((torch.tensor([0, 1, 2, 3]), torch.tensor([3, 5, 6, 7])), (2, 2), (None, None)),  # touching ranges
        ((torch.tensor([0, 1, 2, 1 << 31]), torch.tensor([5, 6, 7, 1 << 31])), (2, 2), (None, None)),  # sparse
        ((torch.tensor([0, 2, 4, 6]), torch.tensor([1, 3, 5, 7])), (3, 3.0), (None, None)),
        ((torch.tensor([0, 2, 4, 6]), torch.tensor([1, 3, 5, 7])), (3, True), (None, None)),
        ((torch.tensor([0, 2, 4, 6]), torch.tensor([1, 3, 5, 7])), (3, 3), (None, [[1]])),
        ((torch.tensor([0, 2, 4, 6]), torch.tensor([1, 3, 5, 7])), (3, 3), (None, torch.tensor([1]))),
    ]
    out = []
    for ids, ks, ex in cases:
        try:
            got = pd.score_topk(q, x, ks[rank], local_ids=ids[rank], exclude=ex[rank])
            out.append(("ok", got[1].tolist()))
        except ValueError as exc:
            out.append(str(exc))
    # disjoint ids that interleave (dealt out modulo W) still search normally
    mine = torch.arange(rank, 8, world)
    xs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    got = pd.score_topk(q, xs[mine], 8, local_ids=mine)
    out.append(torch.equal(got[1], pyl2d.score_topk(q, xs, 8, backend="cpu")[1]))
    # local_topk: an item on two ranks, and m=2.0 on one rank
    mem, reps = torch.randn(2, 4), torch.randn(1, 4)
    for items, m in ((torch.tensor([3]), 1), (torch.tensor([rank]), 1.0 if rank else 1)):
        try:
            pd.local_topk(q, mem, items.repeat(2), torch.arange(2) + 2 * rank, items, reps, 1, m)
            out.append("no error")
        except ValueError as exc:
            out.append(str(exc))
    return out
