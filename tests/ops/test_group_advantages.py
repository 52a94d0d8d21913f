"""group_advantages (and the fused rewards_and_advantages) on every backend against a direct
re-implementation of TRL's GRPO formula, a NaN-aware per-group float64 oracle and the reference."""
import math
import statistics

import pytest
import torch
from hypothesis import given, settings, strategies as st

from pyl2d.ops.aggregate_rewards import aggregate_rewards
from pyl2d.ops.group_advantages import group_advantages
from pyl2d.ops.rewards_and_advantages import rewards_and_advantages
from helpers import DTYPES, backends

# NaN is data here: the Triton interpreter (numpy) warns on NaN arithmetic.
pytestmark = [pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")]
BACKENDS = backends("cpu", op="group_advantages")
FUSED_BACKENDS = backends("cpu", op="rewards_and_advantages")
SCALES = ["group", "batch", "none"]


def trl_nanstd(t, dim=None):
    """trl.trainer.utils.nanstd: NaN-ignoring std with Bessel's correction (NaN for < 2 values)."""
    mean = torch.nanmean(t, dim=dim, keepdim=True)
    var = torch.nanmean((t - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(t), dim=dim, keepdim=True)
    var = var * torch.where(count > 1, count / (count - 1), torch.full_like(var, float("nan")))
    std = torch.sqrt(var)
    return std.squeeze(dim) if dim is not None else std.squeeze()


def trl_advantages(rewards_per_func, reward_weights, num_generations, scale_rewards="group"):
    """TRL GRPOTrainer._generate_and_score_completions ("sum_then_normalize"), re-implemented:
    weighted nansum over reward functions (a row where every function gave None/NaN is NaN),
    per-group nanmean and nanstd, (r - mean) / (std + 1e-4), NaN -> 0."""
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * reward_weights.unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    mean = torch.nanmean(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    if scale_rewards in ("group", "none"):
        if num_generations > 1:
            std = trl_nanstd(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
        else:
            std = torch.zeros_like(rewards)
    else:
        std = trl_nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    advantages = rewards - mean
    if scale_rewards != "none":
        advantages = advantages / (std + 1e-4)
    return rewards, torch.nan_to_num(advantages, nan=0.0)


def nan_aware_oracle(rewards, ids, eps=1e-4, scale="group", impute=False):
    """Per-group statistics in float64 over the valid members; NaN results -> 0."""
    r = [float(x) for x in rewards]
    groups = {}
    for i, g in enumerate(ids):
        groups.setdefault(int(g), []).append(i)
    mean = {}
    for g, members in groups.items():
        vals = [r[i] for i in members if not math.isnan(r[i])]
        mean[g] = statistics.fmean(vals) if vals else math.nan
    if impute:
        r = [mean[int(g)] if math.isnan(x) else x for x, g in zip(r, ids)]
    std = {}
    for g, members in groups.items():
        vals = [r[i] for i in members if not math.isnan(r[i])]
        std[g] = statistics.stdev(vals) if len(vals) > 1 else math.nan
        mean[g] = statistics.fmean(vals) if vals else math.nan
    allv = [x for x in r if not math.isnan(x)]
    bstd = statistics.stdev(allv) if len(allv) > 1 else math.nan
    out = []
    for x, g in zip(r, ids):
        a = x - mean[int(g)]
        if scale == "group":
            a = a / (std[int(g)] + eps)
        elif scale == "batch":
            a = a / (bstd + eps)
        out.append(0.0 if math.isnan(a) else a)
    return torch.tensor(out, dtype=torch.float64)


def random_rewards(b, *, nan_frac=0.2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(b, generator=g)
    r[torch.rand(b, generator=g) < nan_frac] = float("nan")
    return r.to(dtype)


def assert_close(got, want, tol=1e-4):
    assert got.dtype == torch.float32 and not torch.isnan(got).any()
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("group_size", [1, 2, 3, 8, 16])
def test_equals_trl_formula(backend, scale, group_size):
    """Several reward functions with NaNs (some rows entirely NaN = unscorable): pyl2d's
    advantages of TRL's combined rewards are TRL's advantages, groups of one included."""
    g = torch.Generator().manual_seed(group_size)
    per_func = torch.randn(group_size * 5, 3, generator=g)
    per_func[torch.rand(per_func.shape, generator=g) < 0.3] = float("nan")
    per_func[[1, 4]] = float("nan")
    weights = torch.tensor([1.0, 0.5, 2.0])
    rewards, want = trl_advantages(per_func, weights, group_size, scale)
    assert torch.isnan(rewards).sum() >= 2
    assert_close(group_advantages(rewards, group_size, scale=scale, backend=backend), want)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("impute", [False, True])
@pytest.mark.parametrize("b,group_size", [(1, 1), (4, 1), (12, 4), (21, 7), (130, 2)])
def test_nan_aware_contiguous(backend, scale, impute, b, group_size):
    r = random_rewards(b, seed=b + group_size)
    ids = torch.arange(b) // group_size
    want = nan_aware_oracle(r, ids.tolist(), scale=scale, impute=impute)
    assert_close(group_advantages(r, group_size, scale=scale, impute=impute, backend=backend), want)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("impute", [False, True])
def test_arbitrary_group_index(backend, scale, impute):
    g = torch.Generator().manual_seed(5)
    r = random_rewards(53, seed=9)
    index = torch.randint(-3, 1000, (11,), generator=g)[torch.randint(0, 11, (53,), generator=g)]
    want = nan_aware_oracle(r, index.tolist(), scale=scale, impute=impute)
    assert_close(group_advantages(r, group_index=index, scale=scale, impute=impute, backend=backend), want)
    assert_close(group_advantages(r, group_index=index.to(torch.int32), scale=scale, impute=impute,
                                  backend=backend), want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype_matches_reference(backend, dtype):
    r = random_rewards(40, seed=2, dtype=dtype)
    want = group_advantages(r, 5, backend="torch")
    assert_close(group_advantages(r, 5, backend=backend), want)


@pytest.mark.parametrize("backend", ["torch"] + BACKENDS)
def test_all_nan_group_and_constant_group(backend):
    r = torch.tensor([float("nan")] * 4 + [0.8] * 4 + [0.2, 0.4, float("nan"), 0.6])
    adv = group_advantages(r, 4, backend=backend, impute=True)
    assert torch.equal(adv[:4], torch.zeros(4))
    assert adv[4:8].abs().max() < 1e-2  # a constant group has (almost) no advantage
    assert adv[10] == 0 and adv[9].abs() < 1e-6


@pytest.mark.parametrize("backend", FUSED_BACKENDS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("impute", [False, True])
@pytest.mark.parametrize("grouping", ["size", "index"])
def test_fused_equals_composition(backend, scale, impute, grouping):
    g = torch.Generator().manual_seed(11)
    s = 1 + 4 * torch.rand(24, 4, generator=g)
    s[torch.rand(24, 4, generator=g) < 0.3] = float("nan")
    s[3] = float("nan")
    by = torch.rand(24, generator=g) * 100
    by[[5, 17]] = float("nan")  # missing bystander scores: dropped, or (void) the row
    lengths = (torch.arange(24) * 10).float()
    lengths[8] = float("nan")
    kw = dict(weights=torch.tensor([1.0, 1.0, 2.0, 0.5]), mode="harmonic", bystander=by, bystander_coef=0.25,
              lengths=lengths, length_limit=150.0, length_coef=1e-3)
    groups = dict(group_size=4) if grouping == "size" else dict(group_index=torch.arange(24) % 5)
    for policy in ("drop", "void"):
        r_ref = aggregate_rewards(s, kw["weights"], kw["mode"], 5.0, by, 0.25, lengths, 150.0, 1e-3,
                                  missing_terms=policy, backend="torch")
        a_ref = group_advantages(r_ref, **groups, scale=scale, impute=impute, backend="torch")
        rewards, adv = rewards_and_advantages(s, **groups, **kw, scale=scale, impute=impute, missing_terms=policy,
                                              backend=backend)
        torch.testing.assert_close(rewards, r_ref, rtol=2e-6, atol=2e-6, equal_nan=True)
        assert_close(adv, a_ref)
        assert bool(torch.isnan(rewards[[5, 8, 17]]).all()) == (policy == "void")


@settings(max_examples=20, deadline=None)
@given(groups=st.integers(1, 6), size=st.integers(1, 6), seed=st.integers(0, 10_000),
       nan_frac=st.sampled_from([0.0, 0.3, 0.8]), scale=st.sampled_from(SCALES), impute=st.booleans())
def test_property_backends_agree_and_groups_centred(groups, size, seed, nan_frac, scale, impute):
    r = random_rewards(groups * size, seed=seed, nan_frac=nan_frac)
    want = group_advantages(r, size, scale=scale, impute=impute, backend="torch")
    assert not torch.isnan(want).any()
    # Advantages of a group sum to zero (the group mean is subtracted).
    sums = want.view(groups, size).double().sum(dim=1)
    assert sums.abs().max() < 1e-4
    for backend in BACKENDS:
        assert_close(group_advantages(r, size, scale=scale, impute=impute, backend=backend), want)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(-10, 10), factor=st.floats(0.1, 10))
def test_property_affine_invariance(seed, shift, factor):
    """Group-scaled advantages ignore a shift and a positive scaling of the rewards (eps=0)."""
    r = random_rewards(24, seed=seed, nan_frac=0.0).double()
    a = group_advantages(r.float(), 6, eps=0.0, backend="torch")
    b = group_advantages((r * factor + shift).float(), 6, eps=0.0, backend="torch")
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("kwargs,match", [
    (dict(rewards=torch.ones(4, 1), group_size=2), "rewards"),
    (dict(rewards=torch.ones(0), group_size=1), "rewards"),
    (dict(rewards=torch.tensor([1.0, float("inf")]), group_size=2), "rewards"),
    (dict(rewards=torch.ones(4)), "group_size"),
    (dict(rewards=torch.ones(4), group_size=2, group_index=torch.zeros(4, dtype=torch.int64)), "group_size"),
    (dict(rewards=torch.ones(4), group_size=3), "group_size"),
    (dict(rewards=torch.ones(4), group_size=0), "group_size"),
    (dict(rewards=torch.ones(4), group_index=torch.zeros(3, dtype=torch.int64)), "group_index"),
    (dict(rewards=torch.ones(4), group_index=torch.zeros(4)), "group_index"),
    (dict(rewards=torch.ones(4), group_size=2, eps=-1.0), "eps"),
    (dict(rewards=torch.ones(4), group_size=2, scale="global"), "scale"),
])
def test_bad_input_names_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        group_advantages(**kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("impute", [False, True])
@pytest.mark.parametrize("grouping", ["size", "index"])
def test_gpu_backends_match_reference(scale, impute, grouping):
    g = torch.Generator().manual_seed(31)
    s = 1 + 4 * torch.rand(4096, 4, generator=g)
    s[torch.rand(4096, 4, generator=g) < 0.3] = float("nan")
    groups = dict(group_size=16) if grouping == "size" else dict(group_index=torch.randint(0, 300, (4096,),
                                                                                            generator=g))
    r_ref, a_ref = rewards_and_advantages(s, **groups, scale=scale, impute=impute, backend="torch")
    cuda_groups = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in groups.items()}
    for backend in backends("cuda", op="group_advantages"):
        adv = group_advantages(r_ref.cuda(), **cuda_groups, scale=scale, impute=impute, backend=backend)
        assert_close(adv.cpu(), a_ref)
        rewards, adv = rewards_and_advantages(s.cuda(), **cuda_groups, scale=scale, impute=impute, backend=backend)
        torch.testing.assert_close(rewards.cpu(), r_ref, rtol=2e-6, atol=2e-6, equal_nan=True)
        assert_close(adv.cpu(), a_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_rewards(backend):
    r = random_rewards(60, seed=13)[::3]
    want = nan_aware_oracle(r, (torch.arange(20) // 5).tolist())
    assert_close(group_advantages(r, 5, backend=backend), want)


def test_traces_with_torch_compile():
    s = 1 + 4 * torch.rand(16, 4)
    s[3, 1] = float("nan")

    @torch.compile(fullgraph=True, backend="eager")
    def step(scores):
        rewards, adv = rewards_and_advantages(scores, 4)
        return aggregate_rewards(scores, mode="geometric"), group_advantages(rewards, 4), adv

    geo, adv2, adv = step(s)
    torch.testing.assert_close(adv, group_advantages(aggregate_rewards(s), 4))
    torch.testing.assert_close(adv2, adv)
    torch.testing.assert_close(geo, aggregate_rewards(s, mode="geometric"), equal_nan=True)
