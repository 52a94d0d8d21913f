"""Language-space baselines on the same model, for L2D to be measured against.

- :class:`GroundedDecoder` (BIGRec): greedily generate one title, embed it with the same
  model, rank the catalog by L2 distance to the item title embeddings.
- :class:`BeamSearchDecoder`: beam search constrained to the catalog's titles (a prefix trie
  over title token ids), ``num_beams`` titles returned; the strongest language-space decoder
  and the speed reference.
- :class:`PopularityRecommender`: the most frequent training targets, as a floor.

Each exposes ``recommend(samples, k, exclude_history)`` returning item ids [B, k] (-1 pads)
and, for the decoders, the generated titles.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate, answer_token_ids, prompt_token_ids
from pyl2d.l2d.data.records import Catalog, Sample
from pyl2d.l2d.decode.recommender import pad_ids
from pyl2d.l2d.model.hidden import HiddenStateExtractor
from pyl2d.ops import score_topk


class DecodedList(NamedTuple):
    """``ids`` [B, k] int64 (-1 pads) and, for methods that write titles, ``titles`` per query."""
    ids: torch.Tensor
    titles: list[list[str]] | None


def _check_k(k, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} is out of range: it must be between 1 and the catalog size {n}")


def _pad_rows(rows: Sequence[Sequence[int]], k: int) -> torch.Tensor:
    out = torch.full((len(rows), k), -1, dtype=torch.int64)
    for i, r in enumerate(rows):
        r = list(r)[:k]
        if r:
            out[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    return out


def _exclude_tensor(samples: Sequence[Sample]) -> torch.Tensor:
    return pad_ids([s.history_ids for s in samples])


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


class _Generator:
    """Shared plumbing: prompts -> token ids, tokenized answers, generation settings."""

    def __init__(self, model, tokenizer, catalog: Catalog, template: PromptTemplate):
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; titles cannot be terminated")
        self.model, self.tokenizer, self.catalog, self.template = model, tokenizer, catalog, template
        self.eos = int(tokenizer.eos_token_id)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos)
        self.unique_titles = catalog.unique_titles()
        self.title_tokens = answer_token_ids(tokenizer, template, self.unique_titles)
        self.max_new_tokens = max(len(t) for t in self.title_tokens) + 1

    @property
    def device(self):
        return next(self.model.parameters()).device

    def prompt_ids(self, samples: Sequence[Sample]) -> list[list[int]]:
        for i, s in enumerate(samples):
            if not s.history_titles:
                raise ValueError(f"samples[{i}] has an empty history")
        return prompt_token_ids(self.tokenizer, [self.template.prompt(s.history_titles, self.tokenizer)
                                                 for s in samples])

    def generation_kwargs(self) -> dict:
        return dict(do_sample=False, max_new_tokens=self.max_new_tokens, eos_token_id=self.eos,
                    pad_token_id=self.pad, temperature=None, top_p=None, top_k=None)


class GroundedDecoder(_Generator):
    """BIGRec grounding: greedy title generation, then L2 to item title embeddings (the
    hidden state of each title's tokens, as for the generated one)."""

    def __init__(self, model, tokenizer, catalog: Catalog, template: PromptTemplate = DEFAULT_PROMPT,
                 batch_size: int = 64, progress: bool = False):
        super().__init__(model, tokenizer, catalog, template)
        self.extractor = HiddenStateExtractor(model, tokenizer, batch_size=batch_size, progress=progress)
        bos = tokenizer.bos_token_id
        self._prefix = [] if bos is None else [int(bos)]
        by_title = self.extractor.encode_ids([self._prefix + t for t in self.title_tokens], desc="title embeddings")
        index = {t: i for i, t in enumerate(self.unique_titles)}
        self.item_embeddings = by_title[torch.tensor([index[t] for t in catalog.titles])].to(self.device)
        self.item_norms = torch.linalg.vector_norm(self.item_embeddings.float(), dim=1)

    @torch.no_grad()
    def generate(self, samples: Sequence[Sample]) -> list[list[int]]:
        """Greedy answer token ids (without EOS/padding) per sample."""
        ids, mask = _left_pad(self.prompt_ids(samples), self.pad, self.device)
        out = self.model.generate(input_ids=ids, attention_mask=mask, **self.generation_kwargs())
        result = []
        for row in out[:, ids.shape[1]:].tolist():
            row = row[:row.index(self.eos)] if self.eos in row else row
            result.append([t for t in row if t != self.pad])
        return result

    def recommend(self, samples: Sequence[Sample], k: int, exclude_history: bool = True) -> DecodedList:
        _check_k(k, len(self.catalog))
        generated = self.generate(samples)
        vectors = self.extractor.encode_ids([self._prefix + g for g in generated], desc="generated titles")
        vectors = vectors.to(self.device, self.item_embeddings.dtype)
        exclude = _exclude_tensor(samples).to(self.device) if exclude_history else None
        _, ids = score_topk(vectors, self.item_embeddings, k, "l2", exclude, self.item_norms)
        titles = [[self.tokenizer.decode(g).strip()] for g in generated]
        return DecodedList(ids.cpu(), titles)


class _TitleTrie:
    """Prefix trie over the token ids of every title (+ EOS); maps a finished path to its title."""

    def __init__(self, token_lists: Sequence[Sequence[int]], titles: Sequence[str], eos: int):
        self.root: dict = {}
        self.title_of: dict[tuple[int, ...], str] = {}
        for tokens, title in zip(token_lists, titles):
            path = tuple(tokens) + (eos,)
            node = self.root
            for t in path:
                node = node.setdefault(t, {})
            self.title_of.setdefault(path, title)  # two titles with one tokenization: the first
        self._cache: dict[tuple[int, ...], list[int]] = {}
        self.eos = eos

    def allowed(self, prefix: tuple[int, ...]) -> list[int]:
        hit = self._cache.get(prefix)
        if hit is None:
            node = self.root
            for t in prefix:
                node = node.get(t)
                if node is None:
                    break
            hit = list(node) if node else [self.eos]  # finished (or off-trie) beams may only pad/stop
            self._cache[prefix] = hit
        return hit


def _logits_last(model, **kwargs) -> torch.Tensor:
    """The model's output at the last position (``logits_to_keep=1`` where it is accepted)."""
    try:
        out = model(**kwargs, logits_to_keep=1)
    except TypeError:
        out = model(**kwargs)
    return out, torch.log_softmax(out.logits[:, -1].float(), dim=-1)


def _cache_name(model) -> str:
    """The forward argument (and output field) that carries the KV cache: ``cache`` from
    transformers 5.2x, ``past_key_values`` before (5.25 warns on the old name, 5.40 drops it)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def constrained_beam_search(model, prompt_ids: Sequence[Sequence[int]], trie: _TitleTrie, num_beams: int,
                            pad_id: int) -> list[list[tuple[tuple[int, ...], float]]]:
    """The ``num_beams`` best complete trie paths (ending in EOS) per prompt, best first, each
    with its score: the sum of the model's token log-probabilities (full-vocabulary softmax),
    EOS included, without length normalisation (as D3 decodes).

    Written here rather than through ``generate(prefix_allowed_tokens_fn=...)``: once the trie
    narrows (after a title's first tokens most prefixes have one continuation), Hugging Face's
    beam search has fewer allowed candidates than beams, fills the free beams with masked
    (-1e9) continuations of finished titles, and with ``early_stopping`` returns those copies
    as hypotheses: 1-3 distinct titles of 10 on SmolLM2's tokenizer. Here every candidate is
    an allowed (beam, child) pair, so the live beams plus the finished paths always reach at
    least ``num_beams`` titles when the trie has that many, and a query stops only when its
    ``num_beams``-th finished score beats every live beam (scores only fall)."""
    eos = trie.eos
    device = next(model.parameters()).device
    n = len(prompt_ids)
    ids, mask = _left_pad(prompt_ids, pad_id, device)
    positions = (mask.cumsum(1) - 1).clamp_min(0)
    cache_name = _cache_name(model)
    out, logp = _logits_last(model, input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = getattr(out, cache_name)
    # live beams: (query, row in the cache, score, node, path)
    live = [(q, q, 0.0, trie.root, ()) for q in range(n)]
    finished: list[list[tuple[float, tuple[int, ...]]]] = [[] for _ in range(n)]
    last_pos = positions[:, -1]
    while live:
        rows = torch.tensor([b[1] for b in live], device=device)
        tokens = [list(b[3]) for b in live]
        flat_rows = [i for i, ts in enumerate(tokens) for _ in ts]
        flat_tokens = [t for ts in tokens for t in ts]
        gathered = logp[rows[torch.tensor(flat_rows, device=device)], torch.tensor(flat_tokens, device=device)].tolist()
        by_query: dict[int, list] = {}
        k = 0
        for i, (q, _, score, node, path) in enumerate(live):
            for t in tokens[i]:
                s = score + gathered[k]
                k += 1
                if t == eos:
                    finished[q].append((s, path + (eos,)))
                else:
                    by_query.setdefault(q, []).append((s, i, t))
        new_live = []
        for q, cands in by_query.items():
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            done = sorted(finished[q], key=lambda f: (-f[0], f[1]))[:num_beams]
            finished[q] = done
            if len(done) >= num_beams:  # a live beam can only lose score: drop those below the bar
                cands = [c for c in cands if c[0] > done[-1][0]]
            for s, i, t in cands[:num_beams]:
                _, _, _, node, path = live[i]
                new_live.append((q, i, s, node[t], path + (t,)))
        if not new_live:
            break
        # In cache-row order: once the trie narrows every beam has one child, the rows stay
        # where they are, and the cache (most of the time of a step) is not copied.
        new_live.sort(key=lambda b: b[1])
        parents = torch.tensor([live[b[1]][1] for b in new_live], device=device)
        if len(new_live) != len(live) or not torch.equal(parents, torch.arange(len(live), device=device)):
            cache.reorder_cache(parents)
        mask = torch.cat([mask[parents], torch.ones((len(new_live), 1), dtype=mask.dtype, device=device)], 1)
        last_pos = last_pos[parents] + 1
        step_ids = torch.tensor([[b[4][-1]] for b in new_live], device=device)
        out, logp = _logits_last(model, input_ids=step_ids, attention_mask=mask, position_ids=last_pos[:, None],
                                 use_cache=True, **{cache_name: cache})
        cache = getattr(out, cache_name)
        live = [(q, r, s, node, path) for r, (q, _, s, node, path) in enumerate(new_live)]
    return [[(path, score) for score, path in sorted(f, key=lambda f: (-f[0], f[1]))[:num_beams]]
            for f in finished]


class BeamSearchDecoder(_Generator):
    """Beam search over the catalog's titles (:func:`constrained_beam_search`): ``num_beams``
    beams, that many distinct complete titles returned. Each title maps to its most popular
    item (``item_popularity``; ties to the lower id)."""

    def __init__(self, model, tokenizer, catalog: Catalog, template: PromptTemplate = DEFAULT_PROMPT,
                 num_beams: int = 10, item_popularity: torch.Tensor | None = None):
        super().__init__(model, tokenizer, catalog, template)
        self.trie = _TitleTrie(self.title_tokens, self.unique_titles, self.eos)
        distinct = len(self.trie.title_of)
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or not 1 <= num_beams <= distinct:
            raise ValueError(f"num_beams={num_beams!r} must be between 1 and the number of distinct titles "
                             f"({distinct}, as the tokenizer spells them)")
        self.num_beams = num_beams
        pop = item_popularity if item_popularity is not None else torch.zeros(len(catalog))
        self.item_of_title = {t: max(catalog.ids_with_title(t), key=lambda i: (float(pop[i]), -i))
                              for t in self.unique_titles}

    def generate_titles(self, samples: Sequence[Sample]) -> list[list[str]]:
        """``num_beams`` distinct catalog titles per sample, best first."""
        found = constrained_beam_search(self.model, self.prompt_ids(samples), self.trie, self.num_beams, self.pad)
        return [[self.trie.title_of[path] for path, _ in paths] for paths in found]

    def recommend(self, samples: Sequence[Sample], k: int | None = None, exclude_history: bool = True) -> DecodedList:
        """``k`` defaults to (and may not exceed) ``num_beams``; excluded items are dropped
        after decoding, so the list can be shorter (padded with -1)."""
        k = self.num_beams if k is None else k
        if k > self.num_beams:
            raise ValueError(f"k={k} exceeds num_beams={self.num_beams}: beam search returns num_beams titles")
        _check_k(k, len(self.catalog))
        titles = self.generate_titles(samples)
        rows = []
        for s, ts in zip(samples, titles):
            items = [self.item_of_title[t] for t in ts]
            if exclude_history:
                seen = set(s.history_ids)
                items = [i for i in items if i not in seen]
            rows.append(items)
        return DecodedList(_pad_rows(rows, k), titles)


class PopularityRecommender:
    """Most frequent training targets first (ties to the lower id)."""

    def __init__(self, train: Sequence[Sample], num_items: int):
        self.num_items = num_items
        counts = torch.zeros(num_items, dtype=torch.float64)
        for s in train:
            counts[s.target_id] += 1
        self.counts = counts
        self.order = sorted(range(num_items), key=lambda i: (-counts[i].item(), i))

    def recommend(self, samples: Sequence[Sample], k: int, exclude_history: bool = True) -> DecodedList:
        _check_k(k, self.num_items)
        head = self.order[:k + max((len(s.history_ids) for s in samples), default=0)]
        rows = []
        for s in samples:
            seen = set(s.history_ids) if exclude_history else ()
            rows.append([i for i in head if i not in seen][:k])
        return DecodedList(_pad_rows(rows, k), None)
