"""Representation options: each transform against a float64 numpy oracle, identity untouched,
validation and parsing errors naming the field or token."""
import dataclasses

import numpy as np
import pytest
import torch

from pyl2d.l2d.decode.representation import Representation, fit_transform, parse_representation
from helpers import oracle_transform


def _data(m=300, d=10, seed=0, spread=1.0):
    """Rows with very different scales per dimension (the smallest variance of the default
    ones is below the EIG_FLOOR of the largest), correlated, off-centre."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    x = torch.randn(m, d, generator=g, dtype=torch.float64) * torch.logspace(-spread, spread, d, dtype=torch.float64)
    return (x @ mix + 3.0).to(torch.float32)


REPS = ["center", "diag", "pca", "pca:4", "abtt:2", "abtt:1,diag", "abtt:2,pca:5", "norm", "center,norm",
        "pca:6,norm"]


@pytest.mark.parametrize("text", REPS)
def test_transform_matches_the_float64_oracle(text):
    rep = parse_representation(text)
    x = _data()
    queries = _data(m=7, seed=1)
    t = fit_transform(x, rep)
    for rows in (x, queries):
        got = t(rows).double().numpy()
        want = oracle_transform(x, rows, rep)
        assert got.shape == want.shape
        if rep.whiten == "pca":  # eigenvector signs are arbitrary: compare what every metric sees
            got, want = got @ got.T, want @ want.T
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_pca_whitening_gives_identity_covariance_on_the_fit_set():
    x = _data(spread=0.5)
    for rep, dims in ((Representation(whiten="pca"), 10), (Representation(whiten="pca", whiten_dims=3), 3),
                      (Representation(whiten="pca", remove_top=2), 8)):
        y = fit_transform(x, rep)(x).double()
        assert y.shape == (300, dims)
        y = y - y.mean(0)
        torch.testing.assert_close(y.T @ y / 300, torch.eye(dims, dtype=torch.float64), atol=1e-4, rtol=0)


def test_diag_whitening_gives_unit_variances_and_abtt_removes_the_top_directions():
    x = _data()
    y = fit_transform(x, Representation(whiten="diag"))(x).double()
    torch.testing.assert_close(y.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(10, dtype=torch.float64), atol=1e-4, rtol=0)
    centred = x.double() - x.double().mean(0)
    top = torch.linalg.eigh(centred.T @ centred).eigenvectors[:, -2:]
    y = fit_transform(x, Representation(remove_top=2))(x).double()
    assert y.shape == (300, 10)
    assert (y @ top).abs().max() < 1e-4 * y.abs().max()
    # what is left is untouched: the rest of the centred data
    torch.testing.assert_close(y, centred - centred @ top @ top.T, atol=1e-4, rtol=0)


def test_identity_is_untouched_and_dtype_and_device_are_kept():
    x = _data().to(torch.bfloat16)
    t = fit_transform(x, Representation())
    assert t.is_identity and t(x) is x
    y = fit_transform(x, Representation(center=True, normalize=True))(x)
    assert y.dtype == torch.bfloat16 and y.device == x.device
    want = torch.nn.functional.normalize(x.float() - x.double().mean(0).float(), dim=1)
    torch.testing.assert_close(y.float(), want, atol=1e-2, rtol=1e-2)


def test_subsample_is_deterministic_and_the_mean_uses_every_row():
    x = _data(m=400)
    rep = Representation(whiten="pca")
    a, b = fit_transform(x, rep, max_fit_rows=100, seed=5), fit_transform(x, rep, max_fit_rows=100, seed=5)
    full = fit_transform(x, rep)
    assert torch.equal(a.matrix, b.matrix) and torch.equal(a.mean, full.mean)
    assert not torch.allclose(a.matrix.abs(), full.matrix.abs(), atol=1e-3)
    assert not torch.equal(fit_transform(x, rep, max_fit_rows=100, seed=6).matrix, a.matrix)
    with pytest.raises(ValueError, match="max_fit_rows"):
        fit_transform(x, rep, max_fit_rows=0)


def test_validation_names_the_field():
    assert Representation(whiten="diag").center and Representation(remove_top=1).center
    assert Representation().is_identity() and not Representation(normalize=True).is_identity()
    for kwargs, field in ((dict(whiten="zca"), "whiten"), (dict(whiten_dims=0, whiten="pca"), "whiten_dims"),
                          (dict(whiten_dims=4), "whiten_dims"), (dict(whiten="diag", whiten_dims=4), "whiten_dims"),
                          (dict(remove_top=-1), "remove_top"), (dict(remove_top=True), "remove_top"),
                          (dict(center="yes"), "center"), (dict(normalize=1), "normalize")):
        with pytest.raises(ValueError, match=field):
            Representation(**kwargs)
    x = _data(d=6)
    with pytest.raises(ValueError, match="whiten_dims"):
        fit_transform(x, Representation(whiten="pca", whiten_dims=5, remove_top=2))
    with pytest.raises(ValueError, match="remove_top"):
        fit_transform(x, Representation(remove_top=6))
    with pytest.raises(ValueError, match="whiten"):
        fit_transform(torch.ones(5, 6), Representation(whiten="pca"))
    with pytest.raises(ValueError, match="fitted on 6"):
        fit_transform(x, Representation(center=True))(torch.ones(2, 7))


@pytest.mark.parametrize("text, want, label", [
    ("raw", Representation(), "raw"),
    ("center", Representation(center=True), "center"),
    ("center,diag", Representation(whiten="diag"), "center+diag"),
    ("pca", Representation(whiten="pca"), "center+pca"),
    ("pca:64", Representation(whiten="pca", whiten_dims=64), "center+pca64"),
    (" Norm , PCA64 ", Representation(whiten="pca", whiten_dims=64, normalize=True), "center+pca64+norm"),
    ("abtt:2", Representation(remove_top=2), "center+abtt2"),
    ("abtt3+diag+norm", Representation(remove_top=3, whiten="diag", normalize=True), "center+abtt3+diag+norm"),
    ("norm", Representation(normalize=True), "norm"),
])
def test_parse_and_describe(text, want, label):
    rep = parse_representation(text)
    assert rep == want and rep.describe() == label
    assert parse_representation(label) == rep  # describe's labels parse back


@pytest.mark.parametrize("text, token", [
    ("foo", "'foo'"), ("center,bar", "'bar'"), ("pca:x", "'pca:x'"), ("abtt:0", "'abtt:0'"), ("abtt", "'abtt'"),
    ("raw,norm", "'raw'"), ("diag,pca", "'pca'"), ("norm,norm", "'norm'"), ("", "empty"), ("center,,norm", "empty"),
])
def test_parse_errors_name_the_token(text, token):
    with pytest.raises(ValueError, match=token):
        parse_representation(text)


def test_representation_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Representation().center = True
