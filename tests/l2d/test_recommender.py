"""L2DRecommender on a tiny model: global ranking equals a brute-force computation, local
aggregation respects its contract, undecodable items are counted and never returned."""
import pytest
import torch

from pyl2d.l2d.data.prompts import DEFAULT_PROMPT
from pyl2d.l2d.decode.recommender import L2DRecommender
from pyl2d.l2d.memory import build_memory
from pyl2d.l2d.model.hidden import HiddenStateExtractor
from helpers import assert_topk_matches


@pytest.fixture(scope="module")
def memory(tmp_path_factory, tiny_model, tiny_data):
    model, tok = tiny_model
    ex = HiddenStateExtractor(model, tok, batch_size=16, progress=False)
    return build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path_factory.mktemp("mem"),
                        DEFAULT_PROMPT, log=lambda *_: None)


def _recommender(tiny_model, memory, tiny_data, **kw):
    model, tok = tiny_model
    with pytest.warns(UserWarning, match="never occur as a training target") if (memory.item_counts() == 0).any() \
            else _nothing():
        return L2DRecommender(model, tok, memory, tiny_data.catalog, **kw)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _brute_force_scores(rec, memory, tiny_data, samples, metric):
    """Float64 global scores [len(samples), N]: -inf for undecodable and history items. The
    vectors are the recommender's transformed ones (the default representation; the transform
    itself is checked against its own float64 oracle in test_representation.py)."""
    q = rec.transform(rec.encode(samples)).double()
    counts = memory.item_counts()
    reps = torch.zeros(len(tiny_data.catalog), q.shape[1], dtype=torch.float64)
    reps.index_add_(0, memory.item_ids, rec.transform(memory.vectors).double())
    reps /= counts.clamp_min(1)[:, None]
    if metric == "ip":
        s = q @ reps.T
    elif metric == "cosine":
        s = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(reps, dim=1).T
    else:
        s = -torch.cdist(q, reps)
    s[:, counts == 0] = float("-inf")
    for row, sample in enumerate(samples):
        s[row, list(sample.history_ids)] = float("-inf")
    return s


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_global_matches_brute_force(tiny_model, memory, tiny_data, metric):
    """The k best by a float64 brute force, up to float32 rounding: two items whose scores
    differ by less than that may come in either order on different CPUs."""
    rec = _recommender(tiny_model, memory, tiny_data, metric=metric)
    samples = tiny_data.test[:7]
    out = rec.recommend(samples, k=5)
    s = _brute_force_scores(rec, memory, tiny_data, samples, metric)
    assert_topk_matches(out.scores, out.ids, s, 5, rel_tol=1e-4)
    assert out.titles[0] == [tiny_data.catalog.title(i) for i in out.ids[0].tolist()]
    assert torch.all(out.scores[:, :-1] >= out.scores[:, 1:])


def test_local_contract(tiny_model, memory, tiny_data):
    rec = _recommender(tiny_model, memory, tiny_data, aggregation="local", m=10)
    samples = tiny_data.test[:6]
    out = rec.recommend(samples, k=8)
    decodable = set((memory.item_counts() > 0).nonzero().flatten().tolist())
    for row, sample in zip(out.ids.tolist(), samples):
        assert len(set(row)) == 8 and set(row) <= decodable and not set(row) & set(sample.history_ids)
    # m = whole memory: every item's local representation is its global mean, so local
    # gives global's ranking (up to rounding: the two means are summed in different orders)
    full = _recommender(tiny_model, memory, tiny_data, aggregation="local", m=len(memory))
    glob = _recommender(tiny_model, memory, tiny_data, aggregation="global")
    s = _brute_force_scores(glob, memory, tiny_data, samples, "l2")
    for rec_ in (full, glob):  # l2 through |q|^2 - 2 q.x + |x|^2 in float32 cancels: 1e-3
        out = rec_.recommend(samples, k=8)
        assert_topk_matches(out.scores, out.ids, s, 8, rel_tol=1e-3)


def test_inputs_and_errors(tiny_model, memory, tiny_data):
    rec = _recommender(tiny_model, memory, tiny_data)
    s = tiny_data.test[0]
    by_ids = rec.recommend([list(s.history_ids)], k=3)
    by_sample = rec.recommend([s], k=3)
    by_prompt = rec.recommend([DEFAULT_PROMPT.prompt(s.history_titles)], k=3, exclude_history=False)
    assert torch.equal(by_ids.ids, by_sample.ids)
    assert torch.equal(rec.recommend([s], k=3, exclude_history=False).ids, by_prompt.ids)
    with pytest.raises(ValueError, match="out of range"):
        rec.recommend([s], k=len(tiny_data.catalog) + 1)
    with pytest.raises(ValueError, match="empty"):
        rec.recommend([[]], k=3)
    with pytest.raises(ValueError, match="outside the catalog"):
        rec.recommend([[0, 10_000]], k=3)
    with pytest.raises(ValueError, match="metric"):
        L2DRecommender(tiny_model[0], tiny_model[1], memory, tiny_data.catalog, metric="dot")
    for bad, message in (([[1.9]], "not an integer item id"), ([[True]], "not an integer item id"),
                         ([[5], "12"], "mixes prompt strings"), (torch.tensor([[1, 2]]), "queries must be a list"),
                         ((q for q in [[1]]), "queries must be a list"), ([[[1, 2]]], "not an integer item id")):
        with pytest.raises(ValueError, match=message):
            rec.recommend(bad, k=3)
    vectors = rec.encode([s])
    for aggregation, weight in (("global", 1.0), ("local", 1.0), ("local", 0.5)):  # every path checks exclude
        other = _recommender(tiny_model, memory, tiny_data, aggregation=aggregation, local_weight=weight)
        with pytest.raises(ValueError, match="exclude holds id"):
            other.rank(vectors, 3, torch.tensor([[len(tiny_data.catalog)]]))
        with pytest.raises(ValueError, match="exclude must have dtype"):
            other.rank(vectors, 3, torch.tensor([[1.0]]))
    # k beyond the decodable items: the tail is padded with -1 / -inf
    n_ok = int((memory.item_counts() > 0).sum())
    out = rec.recommend([s], k=len(tiny_data.catalog), exclude_history=False)
    assert (out.ids[0] >= 0).sum() == n_ok and torch.isinf(out.scores[0, n_ok:]).all()


def test_undecodable_items_are_reported(tiny_model, tiny_data, tmp_path):
    model, tok = tiny_model
    ex = HiddenStateExtractor(model, tok, progress=False)
    few = [s for s in tiny_data.train if s.target_id % 2 == 0]
    mem = build_memory(ex, few, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, log=lambda *_: None)
    with pytest.warns(UserWarning, match=r"\d+ of 40 catalog items never occur"):
        rec = L2DRecommender(model, tok, mem, tiny_data.catalog)
    assert rec.n_undecodable >= 20
    for agg in ("global", "local"):
        rec.aggregation = agg
        ids = rec.recommend(tiny_data.test[:4], k=5).ids
        assert (ids % 2 == 0).all()


def test_queries_use_the_template_stored_with_the_memory(tiny_model, tiny_data, tmp_path):
    import dataclasses
    import warnings

    from pyl2d.l2d.memory import ItemMemory

    model, tok = tiny_model
    custom = dataclasses.replace(DEFAULT_PROMPT, max_history=3, instruction="Guess what this listener plays next.")
    ex = HiddenStateExtractor(model, tok, progress=False)
    build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", custom, log=lambda *_: None)
    memory = ItemMemory.load(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # undecodable items
        rec = L2DRecommender(model, tok, memory, tiny_data.catalog)
    assert rec.template == custom
    samples = [s for s in tiny_data.test if len(s.history_ids) > 3][:4]
    want = ex.encode([custom.prompt(s.history_titles, tok) for s in samples])
    torch.testing.assert_close(rec.encode(samples), want)
    with pytest.warns(UserWarning, match=r"differs from the one the memory was built with \(in instruction, max_history\)"):
        explicit = L2DRecommender(model, tok, memory, tiny_data.catalog, template=DEFAULT_PROMPT)
    assert explicit.template == DEFAULT_PROMPT


# -- representation options and local_weight, on random memories (no trained model needed) --

import dataclasses  # noqa: E402

from pyl2d.l2d.data import Catalog  # noqa: E402
from pyl2d.l2d.decode.interpolate import interpolated_topk  # noqa: E402
from pyl2d.l2d.decode.representation import Representation, parse_representation  # noqa: E402
from pyl2d.l2d.memory import ItemMemory  # noqa: E402
from pyl2d.ops import local_topk, score_topk, segment_mean  # noqa: E402
from helpers import backends, oracle_scores, oracle_transform  # noqa: E402

N_ITEMS, N_SEEN, DIM = 15, 13, 12  # items 13 and 14 have no memory entry


@pytest.fixture(scope="module")
def random_case():
    """(model, tokenizer, memory, catalog, queries [6, D]): an untrained tiny Llama of hidden
    size DIM (only its extractor is built), and a memory of well-separated random rows."""
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=DIM, intermediate_size=16, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    g = torch.Generator().manual_seed(1)
    scales = torch.logspace(-0.7, 0.7, DIM)
    centres = torch.randn(N_ITEMS, DIM, generator=g) * scales * 1.5
    item_ids = torch.cat([torch.arange(N_SEEN), torch.randint(0, N_SEEN, (107,), generator=g)])
    vectors = centres[item_ids] + torch.randn(len(item_ids), DIM, generator=g) * scales + 2.0
    queries = centres[torch.randint(0, N_ITEMS, (6,), generator=g)] + torch.randn(6, DIM, generator=g) * scales + 2.0
    memory = ItemMemory(vectors, item_ids, N_ITEMS, {"layer": "final", "pooling": "last",
                                                     "template": dataclasses.asdict(DEFAULT_PROMPT)})
    catalog = Catalog([f"item {i}" for i in range(N_ITEMS)])
    return model, SimpleNamespace(pad_token_id=0, eos_token_id=0), memory, catalog, queries


def _random_rec(case, **kw):
    model, tok, memory, catalog, _ = case
    with pytest.warns(UserWarning, match="never occur as a training target"):
        return L2DRecommender(model, tok, memory, catalog, check_model=False, **kw)


def _brute_force(memory, queries, rep, metric, aggregation, m, weight):
    """float64 [B, N] final scores from the definitions: the transform, per-item means,
    the m nearest entries' per-item means blended with weight; -inf for undecodable items."""
    mem = torch.from_numpy(oracle_transform(memory.vectors, memory.vectors, rep).copy())
    q = torch.from_numpy(oracle_transform(memory.vectors, queries, rep).copy())
    counts = memory.item_counts()
    reps = torch.zeros(N_ITEMS, mem.shape[1], dtype=torch.float64).index_add_(0, memory.item_ids, mem)
    scores = oracle_scores(q, reps / counts.clamp_min(1)[:, None], metric)
    if aggregation == "local":
        nearest = torch.sort(oracle_scores(q, mem, metric), dim=1, descending=True, stable=True).indices[:, :m]
        for b in range(q.shape[0]):
            owners = memory.item_ids[nearest[b]]
            for item in owners.unique().tolist():
                local = mem[nearest[b][owners == item]].mean(0, keepdim=True)
                s = oracle_scores(q[b:b + 1], local, metric)[0, 0]
                scores[b, item] = weight * s + (1 - weight) * scores[b, item]
    scores[:, counts == 0] = float("-inf")
    return scores


EXCLUDE = torch.tensor([[3, -1, 3, 0], [14, 1, 2, 5], [-1, -1, -1, -1], [7, 8, 9, 10], [12, 11, -1, 6],
                        [0, 1, 2, 3]])
MODES = [("global", 1.0), ("local", 1.0), ("local", 0.0), ("local", 0.35)]
CASES = [("raw", "l2"), ("center,diag", "l2"), ("pca:6,norm", "l2"), ("abtt:2", "l2"), ("abtt:1,diag,norm", "l2"),
         ("raw", "ip"), ("pca", "ip"), ("center", "cosine"), ("abtt:2,pca:5", "cosine")]


# Interpreted Triton (no GPU) takes seconds per call: it runs one case per mode, on 2 queries.
FAST_BACKENDS = [b for b in backends("cpu", op="local_topk", include_torch=True) if b != "triton"]
OPTION_PARAMS = [(b, *mode, *case) for b in FAST_BACKENDS for mode in MODES for case in CASES] + \
    [("triton", *mode, "pca:6,norm", "l2") for mode in MODES[:2] + MODES[3:]
     if "triton" in backends("cpu", op="local_topk")]


@pytest.mark.parametrize("backend, aggregation, weight, text, metric", OPTION_PARAMS)
def test_options_match_a_float64_brute_force(random_case, monkeypatch, backend, aggregation, weight, text, metric):
    monkeypatch.setenv("PYL2D_BACKEND", backend)
    rep, m = parse_representation(text), 9
    rec = _random_rec(random_case, representation=rep, metric=metric, aggregation=aggregation, m=m,
                      local_weight=weight)
    memory, queries = random_case[2], random_case[4]
    full = _brute_force(memory, queries, rep, metric, aggregation, m, weight)
    if backend == "triton":
        scores, ids = rec.rank(queries[:2], 4, EXCLUDE[:2])
        assert_topk_matches(scores, ids, full[:2], 4, exclude=EXCLUDE[:2], rel_tol=1e-4, msg="triton")
        return
    for k in (1, 4, N_ITEMS):
        scores, ids = rec.rank(queries, k)
        assert_topk_matches(scores, ids, full, k, rel_tol=1e-4, msg=f"k={k}")
        scores, ids = rec.rank(queries, k, EXCLUDE)
        assert_topk_matches(scores, ids, full, k, exclude=EXCLUDE, rel_tol=1e-4, msg=f"k={k} excluded")
    scores, ids = rec.rank(queries[:1], 3, EXCLUDE[:1])  # B = 1
    assert_topk_matches(scores, ids, full[:1], 3, exclude=EXCLUDE[:1], rel_tol=1e-4, msg="B=1")


@pytest.mark.parametrize("device, backend", [pytest.param("cpu", "cpu", id="cpu-cpu")] + [
    pytest.param("cuda", b, id=f"cuda-{b}", marks=pytest.mark.gpu) for b in ("triton", "cuda")])
def test_options_on_the_device_match_a_float64_brute_force(random_case, monkeypatch, device, backend):
    """Model, memory, queries and results on the device, every op on one backend: each
    aggregation mode with each representation (fitted and applied on the device) against the
    float64 brute force. On CUDA this is owed validation (docs/gpu_validation.md); the CPU
    case checks the test with two representations."""
    import copy

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    if backend not in backends(device, op="local_topk"):
        pytest.skip(f"the {backend} backend is unavailable on {device}")
    monkeypatch.setenv("PYL2D_BACKEND", backend)
    model, tok, memory, catalog, queries = random_case
    case = (copy.deepcopy(model).to(device), tok, memory, catalog, queries)
    for aggregation, weight in MODES:
        for text, metric in (CASES if device == "cuda" else CASES[1:3]):
            rep = parse_representation(text)
            rec = _random_rec(case, representation=rep, metric=metric, aggregation=aggregation, m=9,
                              local_weight=weight)
            assert rec.memory_vectors.device.type == device
            full = _brute_force(memory, queries, rep, metric, aggregation, 9, weight)
            for k in (1, 4, N_ITEMS):
                scores, ids = rec.rank(queries.to(device), k, EXCLUDE.to(device))
                assert ids.device.type == device
                assert_topk_matches(scores, ids, full, k, exclude=EXCLUDE, rel_tol=1e-4,
                                    msg=f"{backend} {aggregation} w={weight} {text} {metric} k={k}")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_the_papers_options_are_the_plain_ops_bit_for_bit(random_case, monkeypatch, backend):
    """representation "raw" and local_weight=1: the raw memory itself, and exactly the ops'
    results (the path L2DRecommender took before these options existed)."""
    monkeypatch.setenv("PYL2D_BACKEND", backend)
    memory, queries = random_case[2], random_case[4]
    means, counts = segment_mean(memory.vectors, memory.item_ids, N_ITEMS)
    for kw in ({"representation": Representation()}, {"local_weight": 1.0, "representation": parse_representation("raw")}):
        rec = _random_rec(random_case, aggregation="local", m=9, **kw)
        assert rec.memory_vectors is memory.vectors and rec.transform.is_identity
        got = rec.rank(queries, 5, EXCLUDE)
        want = local_topk(queries, memory.vectors, memory.item_ids, means, 5, 9, "l2", EXCLUDE)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    rec = _random_rec(random_case, representation=Representation())
    seen = (counts > 0).nonzero().flatten()
    scores, sub = score_topk(queries, means[seen], 5, "l2", None, torch.linalg.vector_norm(means[seen], dim=1))
    got = rec.rank(queries, 5)
    assert torch.equal(got[0], scores) and torch.equal(got[1], seen[sub])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_local_weight_zero_is_the_global_ranking(random_case, monkeypatch, backend):
    monkeypatch.setenv("PYL2D_BACKEND", backend)
    queries = random_case[4]
    for text in ("raw", "pca:6,norm"):
        rep = parse_representation(text)
        glob = _random_rec(random_case, representation=rep).rank(queries, 8, EXCLUDE)
        zero = _random_rec(random_case, representation=rep, aggregation="local", m=9, local_weight=0.0)
        got = zero.rank(queries, 8, EXCLUDE)
        assert torch.equal(got[1], glob[1])
        torch.testing.assert_close(got[0], glob[0], rtol=1e-5, atol=1e-5)


def test_interpolated_topk_as_a_function(random_case):
    """Given only the op arguments (no precomputed decodable set), with float32 item_reps
    against float16 queries, and weight 1 = local_topk's contract."""
    memory, queries = random_case[2], random_case[4]
    means, _ = segment_mean(memory.vectors, memory.item_ids, N_ITEMS)
    for weight in (1.0, 0.6):
        full = _brute_force(memory, queries, Representation(), "l2", "local", 7, weight)
        scores, ids = interpolated_topk(queries, memory.vectors, memory.item_ids, means, 6, 7, "l2", weight, EXCLUDE)
        assert_topk_matches(scores, ids, full, 6, exclude=EXCLUDE, rel_tol=1e-4)
    half = interpolated_topk(queries.half(), memory.vectors.half(), memory.item_ids, means, 6, 7, "l2", 0.6)
    assert half[0].dtype == torch.float32 and (half[1] >= 0).all() and (half[1] < N_SEEN).all()
    for bad, message in (({"weight": 1.5}, "local_weight"), ({"k": 0}, "k must"), ({"m": 500}, "m must")):
        args = dict(k=6, m=7, weight=0.5) | bad
        with pytest.raises(ValueError, match=message):
            interpolated_topk(queries, memory.vectors, memory.item_ids, means, args["k"], args["m"], "l2",
                              args["weight"])


def test_options_are_stored_validated_and_labelled(random_case):
    model, tok, memory, catalog, queries = random_case
    rep = parse_representation("pca:6,norm")
    rec = _random_rec(random_case, representation=rep, aggregation="local", m=9, local_weight=0.35)
    assert rec.representation == rep and rec.local_weight == 0.35
    assert rec.memory_vectors.shape == (len(memory), 6) and rec.item_reps.shape == (N_ITEMS, 6)
    assert rec.describe() == "local(m=9,w=0.35)/l2/center+pca6+norm"
    assert _random_rec(random_case).describe() == "global/l2/center+pca+norm"  # the default
    assert _random_rec(random_case, representation=Representation()).describe() == "global/l2/raw"
    # a transform fitted once is reused by another recommender on the same memory
    again = _random_rec(random_case, representation=rep, aggregation="local", m=9, local_weight=0.35,
                        transform=rec.transform)
    assert again.transform is rec.transform
    for a, b in zip(again.rank(queries, 5, EXCLUDE), rec.rank(queries, 5, EXCLUDE)):
        assert torch.equal(a, b)
    # raw states in another dtype are cast like the memory
    assert torch.equal(rec.rank(queries.double(), 5)[1], rec.rank(queries, 5)[1])
    for kw, message in (({"local_weight": 1.5}, "local_weight"), ({"local_weight": -0.1}, "local_weight"),
                        ({"local_weight": True}, "local_weight"), ({"local_weight": float("nan")}, "local_weight"),
                        ({"local_weight": 0.5, "aggregation": "global"}, "local_weight"),
                        ({"representation": "pca"}, "representation"),
                        ({"representation": Representation(center=True), "transform": rec.transform}, "transform")):
        with pytest.raises(ValueError, match=message):
            L2DRecommender(model, tok, memory, catalog, check_model=False, **kw)
