"""Representation options: how memory and query hidden states are transformed before L2D
matches them. All off (``Representation()``) is the paper, and then nothing is touched.

The transform is fitted once on the memory vectors (:func:`fit_transform`) and applied alike
to the memory (before its per-item means are taken) and to every query, so the fused ops
(``segment_mean``, ``score_topk``, ``local_topk``) run unchanged on the transformed vectors:
it is a pre-transform, never a separate scoring path. In order:

1. centre: subtract the memory mean (implied by whitening and by ``remove_top``);
2. ``remove_top`` ("all-but-the-top", Mu & Viswanath 2018): project out the memory's top
   principal directions;
3. whiten: ``"diag"`` divides each dimension by its standard deviation on the memory (after
   step 2); ``"pca"`` projects onto the principal directions (those after the removed ones;
   the top ``whiten_dims``, default all) divided by the square roots of their variances, so
   the memory's covariance becomes the identity (and the dimension may shrink to D');
4. normalize: scale each vector to unit L2 norm.

Statistics are fitted in float64: the mean over every memory row, the covariance (population,
1/n) over all rows or a deterministic subsample of ``max_fit_rows``, both in chunked passes.
Variances below 1e-6 times the largest are raised to that floor before dividing by them.
PCA whitening is determined only up to the eigenvectors' signs, which no metric sees (a
sign flip of a coordinate preserves distances and inner products).
"""
from __future__ import annotations

import dataclasses

import torch

from pyl2d._codes import NORM_EPS

WHITENINGS = (None, "diag", "pca")
EIG_FLOOR = 1e-6  # variances below this fraction of the largest are raised to it
_CHUNK_ELEMENTS = 1 << 24  # rows per chunk * D, for the float64 fit and the float32 apply

__all__ = ["EIG_FLOOR", "LatentTransform", "Representation", "WHITENINGS", "fit_transform",
           "parse_representation"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Representation:
    """How memory and query hidden states are transformed before matching (all off = the paper).

    ``center``: subtract the memory mean (from memory and queries). ``whiten``: None, "diag"
    (divide each dimension by the memory's std) or "pca" (PCA whitening fitted on the
    memory). ``whiten_dims`` ("pca" only): keep the top whiten_dims components (None: all).
    ``remove_top``: project out the memory's top principal directions after centring
    ("all-but-the-top"). ``normalize``: unit-normalise after the above (before any metric).
    Whitening and ``remove_top`` imply centring: ``center`` is set to True with them."""
    center: bool = False
    whiten: str | None = None
    whiten_dims: int | None = None
    remove_top: int = 0
    normalize: bool = False

    def __post_init__(self):
        for name in ("center", "normalize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.whiten not in WHITENINGS:
            raise ValueError(f"whiten must be one of {WHITENINGS}; got {self.whiten!r}")
        if self.whiten_dims is not None:
            if not _is_int(self.whiten_dims) or self.whiten_dims < 1:
                raise ValueError(f"whiten_dims must be a positive int or None, got {self.whiten_dims!r}")
            if self.whiten != "pca":
                raise ValueError(f"whiten_dims applies to whiten='pca' only (whiten is {self.whiten!r})")
        if not _is_int(self.remove_top) or self.remove_top < 0:
            raise ValueError(f"remove_top must be an int >= 0, got {self.remove_top!r}")
        if self.whiten is not None or self.remove_top:
            object.__setattr__(self, "center", True)

    def is_identity(self) -> bool:
        """True when nothing is transformed (the paper's representation)."""
        return not (self.center or self.whiten or self.remove_top or self.normalize)

    def describe(self) -> str:
        """A short stable label, e.g. "raw", "center", "center+abtt2+pca64+norm"; it parses
        back with :func:`parse_representation`."""
        parts = []
        if self.center:
            parts.append("center")
        if self.remove_top:
            parts.append(f"abtt{self.remove_top}")
        if self.whiten == "diag":
            parts.append("diag")
        elif self.whiten == "pca":
            parts.append("pca" if self.whiten_dims is None else f"pca{self.whiten_dims}")
        if self.normalize:
            parts.append("norm")
        return "+".join(parts) or "raw"


def parse_representation(text: str) -> Representation:
    """A :class:`Representation` from tokens joined by commas (or "+", as ``describe``
    writes them): "raw" (alone), "center", "diag", "pca", "pca:N" / "pcaN" (top N
    components), "abtt:N" / "abttN" (remove the top N directions), "norm". E.g.
    "center,diag", "pca:64,norm", "abtt:2". ValueError naming the bad token."""
    if not isinstance(text, str):
        raise ValueError(f"a representation is a string like 'center,pca:64'; got {type(text).__name__}")
    tokens = [t.strip().lower() for t in text.replace("+", ",").split(",")]
    if not text.strip() or any(not t for t in tokens):
        raise ValueError(f"representation {text!r} has an empty token; use e.g. 'raw', 'center,diag' or 'pca:64'")
    fields: dict = {}

    def count(token: str, stem: str) -> int:
        number = token[len(stem):].lstrip(":")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"representation token {token!r}: {stem} takes a positive count, e.g. {stem}:2")
        return int(number)

    def put(token: str, key: str, value) -> None:
        if key in fields:
            raise ValueError(f"representation token {token!r} repeats or contradicts an earlier one")
        fields[key] = value

    for token in tokens:
        if token == "raw":
            if len(tokens) > 1:
                raise ValueError(f"representation token 'raw' cannot be combined with others (in {text!r})")
        elif token == "center":
            put(token, "center", True)
        elif token in ("norm", "normalize"):
            put(token, "normalize", True)
        elif token == "diag":
            put(token, "whiten", "diag")
        elif token == "pca":
            put(token, "whiten", "pca")
        elif token.startswith("pca"):
            put(token, "whiten", "pca")
            fields["whiten_dims"] = count(token, "pca")
        elif token.startswith("abtt"):
            put(token, "remove_top", count(token, "abtt"))
        else:
            raise ValueError(f"unknown representation token {token!r}; use raw, center, diag, pca, pca:N, "
                             "abtt:N or norm, joined by commas")
    return Representation(**fields)


@dataclasses.dataclass
class LatentTransform:
    """A fitted representation: ``y = normalize(((x - mean) - (x - mean) @ remove @ remove.T)
    @ matrix * scale)``, each step skipped where its tensor is None (float32 tensors:
    ``mean`` [D], ``remove`` [D, r] orthonormal directions to project out, ``matrix`` [D, D'],
    ``scale`` [D'] per output dimension). The identity transform returns its input itself."""
    mean: torch.Tensor | None = None
    matrix: torch.Tensor | None = None
    normalize: bool = False
    remove: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    representation: Representation = dataclasses.field(default_factory=Representation)
    in_dim: int | None = None  # D, when fitted

    @property
    def is_identity(self) -> bool:
        return self.mean is None and self.matrix is None and self.remove is None and self.scale is None \
            and not self.normalize

    def out_dim(self, in_dim: int) -> int:
        if self.matrix is not None:
            return self.matrix.shape[1]
        return in_dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed [n, D'] rows of ``x`` [n, D], float32 math, in ``x``'s dtype and on
        its device (chunked, so no float32 copy of a large ``x`` is made at once)."""
        if self.is_identity:
            return x
        if x.dim() != 2:
            raise ValueError(f"a latent transform takes [n, D] vectors, got shape {tuple(x.shape)}")
        if self.in_dim is not None and x.shape[1] != self.in_dim:
            raise ValueError(f"the transform was fitted on {self.in_dim}-dimensional vectors, got {x.shape[1]}")
        params = [None if t is None else t.to(x.device, torch.float32)
                  for t in (self.mean, self.remove, self.matrix, self.scale)]
        out = torch.empty((x.shape[0], self.out_dim(x.shape[1])), dtype=x.dtype, device=x.device)
        step = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
        for start in range(0, x.shape[0], step):
            out[start:start + step] = self._apply(x[start:start + step].to(torch.float32), *params).to(x.dtype)
        return out

    def _apply(self, y, mean, remove, matrix, scale):
        if mean is not None:
            y = y - mean
        if remove is not None:
            y = y - (y @ remove) @ remove.T
        if matrix is not None:
            y = y @ matrix
        if scale is not None:
            y = y * scale
        if self.normalize:
            y = y / torch.linalg.vector_norm(y, dim=1, keepdim=True).clamp_min(NORM_EPS)
        return y


def _chunks(vectors: torch.Tensor, rows: torch.Tensor | None = None):
    """float64 chunks of ``vectors`` (or of its ``rows``)."""
    n = vectors.shape[0] if rows is None else rows.shape[0]
    step = max(1, _CHUNK_ELEMENTS // max(1, vectors.shape[1]))
    for start in range(0, n, step):
        part = vectors[start:start + step] if rows is None else vectors[rows[start:start + step]]
        yield part.to(torch.float64)


def fit_rows(n: int, max_fit_rows: int, seed: int, device) -> torch.Tensor | None:
    """The memory rows the covariance is fitted on: None (all) when ``n <= max_fit_rows``,
    else a sorted subsample of ``max_fit_rows`` drawn with ``seed`` (the same on every machine)."""
    if n <= max_fit_rows:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:max_fit_rows].sort().values.to(device)


def fit_transform(vectors: torch.Tensor, rep: Representation, *, max_fit_rows: int = 200_000,
                  seed: int = 0) -> LatentTransform:
    """Fit ``rep`` on memory ``vectors`` [M, D] (any float dtype, on any device; fitted there
    in float64). The identity representation fits nothing and returns the identity."""
    if not isinstance(rep, Representation):
        raise ValueError(f"rep must be a Representation, got {type(rep).__name__}")
    if not _is_int(max_fit_rows) or max_fit_rows < 2:
        raise ValueError(f"max_fit_rows must be an int >= 2, got {max_fit_rows!r}")
    if vectors.dim() != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0 or not vectors.is_floating_point():
        raise ValueError(f"vectors must be a non-empty [M, D] float tensor, got {vectors.dtype} "
                         f"{tuple(vectors.shape)}")
    d = vectors.shape[1]
    if rep.is_identity():
        return LatentTransform(representation=rep, in_dim=d)
    if rep.remove_top >= d:
        raise ValueError(f"remove_top={rep.remove_top} must be smaller than the dimension {d}")
    if rep.whiten_dims is not None and rep.whiten_dims > d - rep.remove_top:
        raise ValueError(f"whiten_dims={rep.whiten_dims} exceeds the {d - rep.remove_top} directions left "
                         f"(dimension {d} minus remove_top={rep.remove_top})")
    out = LatentTransform(normalize=rep.normalize, representation=rep, in_dim=d)
    if not rep.center:
        return out
    mean = sum(chunk.sum(0) for chunk in _chunks(vectors)) / vectors.shape[0]
    out.mean = mean.to(torch.float32)
    if rep.whiten is None and not rep.remove_top:
        return out
    rows = fit_rows(vectors.shape[0], max_fit_rows, seed, vectors.device)
    n_fit = vectors.shape[0] if rows is None else rows.shape[0]
    if rep.whiten == "diag" and not rep.remove_top:  # per-dimension variances only
        var = sum(((c - mean) ** 2).sum(0) for c in _chunks(vectors, rows)) / n_fit
        out.scale = _inverse_std(var, "whiten").to(torch.float32)
        return out
    cov = torch.zeros((d, d), dtype=torch.float64, device=vectors.device)
    for chunk in _chunks(vectors, rows):
        centred = chunk - mean
        cov.addmm_(centred.T, centred)
    cov /= n_fit
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)  # largest first
    r = rep.remove_top
    if rep.whiten == "pca":
        keep = slice(r, d if rep.whiten_dims is None else r + rep.whiten_dims)
        out.matrix = (eigvecs[:, keep] * _inverse_std(eigvals, "whiten")[keep]).to(torch.float32).contiguous()
        return out
    top = eigvecs[:, :r]
    out.remove = top.to(torch.float32).contiguous()
    if rep.whiten == "diag":  # the per-dimension variances after the projection: diag(P cov P)
        projector = torch.eye(d, dtype=torch.float64, device=vectors.device) - top @ top.T
        var = ((projector @ cov) * projector).sum(1)
        out.scale = _inverse_std(var, "whiten").to(torch.float32)
    return out


def _inverse_std(var: torch.Tensor, name: str) -> torch.Tensor:
    largest = float(var.max())
    if not largest > 0:
        raise ValueError(f"{name}: the memory vectors have no variance to whiten by")
    return var.clamp_min(EIG_FLOOR * largest).rsqrt()
