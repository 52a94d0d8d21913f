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
            self.title_of[path] = title
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


class BeamSearchDecoder(_Generator):
    """Beam search over the catalog's titles: ``num_beams`` beams, that many titles returned.
    Each title maps to its most popular item (``item_popularity``; ties to the lower id)."""

    def __init__(self, model, tokenizer, catalog: Catalog, template: PromptTemplate = DEFAULT_PROMPT,
                 num_beams: int = 10, item_popularity: torch.Tensor | None = None):
        super().__init__(model, tokenizer, catalog, template)
        if num_beams < 1 or num_beams > len(self.unique_titles):
            raise ValueError(f"num_beams={num_beams} must be between 1 and the number of distinct titles "
                             f"({len(self.unique_titles)})")
        self.num_beams = num_beams
        self.trie = _TitleTrie(self.title_tokens, self.unique_titles, self.eos)
        pop = item_popularity if item_popularity is not None else torch.zeros(len(catalog))
        self.item_of_title = {t: max(catalog.ids_with_title(t), key=lambda i: (float(pop[i]), -i))
                              for t in self.unique_titles}

    @torch.no_grad()
    def generate_titles(self, samples: Sequence[Sample]) -> list[list[str]]:
        """``num_beams`` catalog titles per sample, best first."""
        ids, mask = _left_pad(self.prompt_ids(samples), self.pad, self.device)
        width = ids.shape[1]
        trie = self.trie

        def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
            return trie.allowed(tuple(sent[width:].tolist()))

        out = self.model.generate(input_ids=ids, attention_mask=mask, num_beams=self.num_beams,
                                  num_return_sequences=self.num_beams, prefix_allowed_tokens_fn=allowed,
                                  early_stopping=True, **self.generation_kwargs())
        rows = out[:, width:].tolist()
        titles: list[list[str]] = []
        for q in range(len(samples)):
            found = []
            for row in rows[q * self.num_beams:(q + 1) * self.num_beams]:
                path = tuple(row[:row.index(self.eos) + 1]) if self.eos in row else tuple(row)
                title = trie.title_of.get(path)
                if title is not None and title not in found:
                    found.append(title)
            titles.append(found)
        return titles

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
