"""``L2DRecommender``: top-k items from one prefill of the prompt, no generation, no LM head.

The prompt's final hidden state is matched against item representations built from the
memory: ``aggregation="global"`` uses each item's mean memory vector (``segment_mean``);
``"local"`` averages, per query, only the item's entries among the query's ``m`` nearest
memory vectors and falls back to the global mean for items without one (``local_topk``).
``local_weight`` < 1 blends the two for items with local entries
(:mod:`pyl2d.l2d.decode.interpolate`). ``representation`` transforms the hidden states before
matching (:mod:`pyl2d.l2d.decode.representation`: centring, whitening, all-but-the-top,
normalising): fitted on the memory once at construction, applied to the memory before the
per-item means and to every query, so the same fused ops run on the transformed vectors.
Items that never occur as a training target have no memory entry and cannot be decoded;
they are counted at construction and never returned. Queries are prompted with the template
the memory was built with (stored in its manifest) unless another one is passed explicitly.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple, Sequence

import torch

from pyl2d._topk import pad_candidates
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate
from pyl2d.l2d.data.records import Catalog, Sample, sample_from_history
from pyl2d.l2d.decode.interpolate import check_local_weight, interpolated_topk
from pyl2d.l2d.decode.representation import LatentTransform, Representation, fit_transform
from pyl2d.l2d.memory import ItemMemory
from pyl2d.l2d.model.hidden import HiddenStateExtractor, layer_from_manifest
from pyl2d.ops import local_topk, score_topk, segment_mean
from pyl2d.ops.score_topk import METRICS as _OP_METRICS
from pyl2d.ops.score_topk import check_exclude

DEFAULT_METRIC = "l2"
# The pre-transform L2D matches with unless told otherwise: centring, PCA whitening fitted on
# the memory, unit length ("pca+norm"; Representation() = "raw" is the paper's). The one
# option that beat the paper's on the validation splits of both data sets, for global and
# local aggregation alike: docs/results.md, bench/l2d_study.py.
DEFAULT_REPRESENTATION = Representation(center=True, whiten="pca", normalize=True)
# The similarities the ops support, the default first (the order the CLI lists them in).
METRICS = (DEFAULT_METRIC, *(m for m in _OP_METRICS if m != DEFAULT_METRIC))
AGGREGATIONS = ("global", "local")


class Recommendations(NamedTuple):
    """``ids`` [B, k] int64 and ``scores`` [B, k] float32 (best first; -1 / -inf where fewer
    than k items are admissible) and the matching ``titles`` (None for -1)."""
    ids: torch.Tensor
    scores: torch.Tensor
    titles: list[list[str | None]]


def resolve_template(memory: ItemMemory, template: PromptTemplate | None) -> PromptTemplate:
    """``template``, else the one stored in the memory's manifest (else DEFAULT_PROMPT).

    A query prompted differently from the memory's prompts lands elsewhere in latent space,
    so an explicit template that differs from the stored one is warned about."""
    stored = memory.template
    if template is None:
        if stored is None:
            warnings.warn("the memory's manifest stores no prompt template; using DEFAULT_PROMPT", stacklevel=3)
        return stored or DEFAULT_PROMPT
    if stored is not None and template != stored:
        changed = [f.name for f in dataclasses.fields(template) if getattr(template, f.name) != getattr(stored, f.name)]
        warnings.warn(f"the prompt template passed differs from the one the memory was built with (in "
                      f"{', '.join(changed)}); queries may not match the memory. Omit template= to use the stored one",
                      stacklevel=3)
    return template


class L2DRecommender:
    """Recommend by latent-space decoding. ``memory`` must come from ``model`` (checked).

    ``template`` defaults to the prompt template stored with the memory; pass one only to
    deliberately query with another (a warning says it differs).

    ``representation`` (default: none, the paper) is fitted on the memory vectors here, once;
    ``transform`` may pass one already fitted on this memory with the same representation
    (from :func:`~pyl2d.l2d.decode.representation.fit_transform` or another recommender's
    ``.transform``) to skip the fit. ``local_weight`` (``aggregation="local"`` only; 1 = the
    paper): items with entries among the query's m nearest score ``w * local + (1 - w) *
    global``. Construction runs no model forward."""

    def __init__(self, model, tokenizer, memory: ItemMemory, catalog: Catalog, *, metric: str = DEFAULT_METRIC,
                 aggregation: str = "global", m: int = 1000, template: PromptTemplate | None = None,
                 batch_size: int = 64, progress: bool = False, check_model: bool = True,
                 representation: Representation | None = None, local_weight: float = 1.0,
                 transform: LatentTransform | None = None):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got {aggregation!r}")
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be a positive int, got {m!r}")
        local_weight = check_local_weight(local_weight)
        if aggregation != "local" and local_weight != 1.0:
            raise ValueError(f"local_weight={local_weight} applies to aggregation='local' only")
        representation = DEFAULT_REPRESENTATION if representation is None else representation
        if not isinstance(representation, Representation):
            raise ValueError(f"representation must be a Representation or None, got {type(representation).__name__}")
        if transform is not None and transform.representation != representation:
            raise ValueError(f"transform was fitted for representation {transform.representation.describe()!r}, "
                             f"not {representation.describe()!r}")
        memory.check_catalog(catalog)
        if check_model:
            memory.check_model(model)
        layer = layer_from_manifest(memory.manifest.get("layer", "final"))
        self.extractor = HiddenStateExtractor(model, tokenizer, layer=layer,
                                              pooling=memory.manifest.get("pooling", "last"),
                                              batch_size=batch_size, progress=progress)
        self.catalog, self.template = catalog, resolve_template(memory, template)
        self.metric, self.aggregation, self.m = metric, aggregation, min(m, len(memory))
        self.representation, self.local_weight = representation, local_weight
        self.dtype = memory.vectors.dtype
        self._index(memory, len(catalog), transform)
        if self.n_undecodable:
            warnings.warn(f"{self.n_undecodable} of {len(catalog)} catalog items never occur as a training "
                          "target; L2D cannot recommend them", stacklevel=2)

    def _index(self, memory: ItemMemory, n_items: int, transform: LatentTransform | None) -> None:
        """The search structures: transformed memory, per-item means, the decodable items."""
        device = self.extractor.device
        self._memory = memory  # its file is checked before every search: rank()
        raw = memory.vectors.to(device)
        self.transform = fit_transform(raw, self.representation) if transform is None else transform
        self.memory_vectors = self.transform(raw)  # the raw vectors themselves when there is no transform
        self.memory_item_ids = memory.item_ids.to(device)
        means, counts = segment_mean(self.memory_vectors, self.memory_item_ids, n_items)
        self.counts = counts
        self.item_reps = means.to(self.dtype)  # [N, D], zero rows for items without memory
        decodable = counts > 0
        self.decodable_ids = decodable.nonzero().flatten()  # ascending: ties still go to the lower id
        self.decodable_reps = self.item_reps[self.decodable_ids].contiguous()
        self.decodable_norms = torch.linalg.vector_norm(self.decodable_reps.float(), dim=1)
        position = torch.full((n_items,), -1, dtype=torch.int64, device=device)
        position[self.decodable_ids] = torch.arange(self.decodable_ids.numel(), device=device)
        self._position = position
        self.n_undecodable = int((~decodable).sum())

    # -- queries ------------------------------------------------------------------------
    def _as_samples(self, queries) -> tuple[list[str], list[tuple[int, ...]] | None]:
        """Prompts, and histories when the queries carry them (Samples or id lists)."""
        if not isinstance(queries, (list, tuple)) or (queries and not isinstance(queries[0], (str, Sample, list, tuple))):
            raise ValueError(f"queries must be a list (of prompt strings, item-id histories or Samples), got "
                             f"{type(queries).__name__}" + (f" of {type(queries[0]).__name__}"
                                                           if isinstance(queries, (list, tuple)) else ""))
        if len(queries) == 0:
            raise ValueError("queries is empty")
        kinds = {str if isinstance(q, str) else type(q) for q in queries}
        if str in kinds and len(kinds) > 1:  # "12" among histories is no history (1, 2)
            raise ValueError("queries mixes prompt strings with histories or Samples; pass one kind")
        if all(isinstance(q, str) for q in queries):
            return list(queries), None
        samples = [q if isinstance(q, Sample) else sample_from_history(q, self.catalog) for q in queries]
        for i, s in enumerate(samples):
            if not s.history_titles:
                raise ValueError(f"queries[{i}] has an empty history")
        tok = self.extractor.tokenizer
        return [self.template.prompt(s.history_titles, tok) for s in samples], [s.history_ids for s in samples]

    def describe(self) -> str:
        """A short stable label of the ranking options, e.g. "global/l2/raw" or
        "local(m=50,w=0.5)/cosine/center+pca64" (for tables and JSON)."""
        agg = self.aggregation
        if agg == "local":
            agg += f"(m={self.m}" + ("" if self.local_weight == 1.0 else f",w={self.local_weight:g}") + ")"
        return f"{agg}/{self.metric}/{self.representation.describe()}"

    def encode(self, queries) -> torch.Tensor:
        """[B, D] raw query hidden states (one prefill per prompt, batched), in the memory's
        dtype: what :meth:`rank` takes (``self.transform`` gives their transformed form)."""
        prompts, _ = self._as_samples(queries)
        return self.extractor.encode(prompts, desc="queries").to(self.extractor.device, self.dtype)

    def recommend(self, queries, k: int = 10, exclude_history: bool = True) -> Recommendations:
        """Top-k items for each query: prompt strings, item-id histories, or Samples.

        ``exclude_history`` drops the items of the user's history (not possible for plain
        prompt strings, whose history is unknown)."""
        prompts, histories = self._as_samples(queries)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.catalog):
            raise ValueError(f"k={k!r} is out of range: it must be between 1 and the catalog size {len(self.catalog)}")
        vectors = self.extractor.encode(prompts, desc="queries").to(self.extractor.device, self.dtype)
        exclude = pad_ids(histories, vectors.device) if exclude_history and histories is not None else None
        scores, ids = self.rank(vectors, k, exclude)
        return Recommendations(ids, scores, [[self.catalog.title(i) if i >= 0 else None for i in row]
                                             for row in ids.tolist()])

    # -- ranking ------------------------------------------------------------------------
    def rank(self, vectors: torch.Tensor, k: int, exclude: torch.Tensor | None = None):
        """(scores [B, k], ids [B, k]) for RAW query hidden states [B, D] (as :meth:`encode`
        returns them; any float dtype and device), which are transformed here by the
        recommender's representation: hidden states computed once can be ranked by many
        recommenders built on the same memory. ``exclude`` [B, E] item ids, -1 pads."""
        self._memory.check_unchanged()  # before a page of a truncated mapped file is touched (SIGBUS)
        vectors = self.transform(vectors.to(self.memory_vectors.device)).to(self.dtype)
        check_exclude(exclude, vectors.shape[0], len(self.catalog))  # every path below indexes by it
        if exclude is not None:
            exclude = exclude.to(vectors.device)
        if self.aggregation == "local" and self.local_weight != 1.0:
            k_eff = min(k, len(self.catalog))
            scores, ids = interpolated_topk(vectors, self.memory_vectors, self.memory_item_ids, self.item_reps,
                                            k_eff, self.m, self.metric, self.local_weight, exclude,
                                            decodable_ids=self.decodable_ids, decodable_reps=self.decodable_reps,
                                            decodable_norms=self.decodable_norms)
        elif self.aggregation == "local":
            k_eff = min(k, len(self.catalog))
            scores, ids = local_topk(vectors, self.memory_vectors, self.memory_item_ids,
                                                       self.item_reps, k_eff, self.m, self.metric, exclude)
        else:
            n = self.decodable_ids.numel()
            k_eff = min(k, n)
            sub_exclude = None
            if exclude is not None:
                sub_exclude = torch.where(exclude >= 0, self._position[exclude.clamp_min(0)], -1)
            scores, sub_ids = score_topk(vectors, self.decodable_reps, k_eff, self.metric, sub_exclude,
                                         self.decodable_norms if self.metric != "ip" else None)
            ids = torch.where(sub_ids >= 0, self.decodable_ids[sub_ids.clamp_min(0)], -1)
        return pad_candidates(scores, ids, k)


def pad_ids(rows: Sequence[Sequence[int]], device=None) -> torch.Tensor:
    """[len(rows), max(1, longest)] int64 item ids, -1 padded: the ``exclude`` the ops take."""
    width = max(1, max(len(r) for r in rows))
    out = torch.full((len(rows), width), -1, dtype=torch.int64)
    for i, r in enumerate(rows):
        if r:
            out[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    return out.to(device)
