"""``ShardedL2DRecommender``: :class:`~pyl2d.l2d.decode.recommender.L2DRecommender` over a memory
and catalog partitioned across the ranks of a torch.distributed process group.

Every rank maps the same memory (one file on shared storage, :mod:`pyl2d.l2d.memory.datafile`)
and touches only the rows of the items it owns (item id modulo the world size,
:func:`pyl2d.distributed.partition_by_item`), so each holds about 1/W of the memory, of the
item representations and of the search work. Queries are encoded data-parallel (each rank
its own), gathered, searched against every shard with the exact sharded ops of
:mod:`pyl2d.distributed`, and each rank gets the recommendations of its own queries: the
same as the one-process recommender's (ties to the lower global id, history excluded).

The representation is fitted once, by rank 0 on the whole memory (the same rows the
one-process fit reads), and sent to the others; each rank applies it to its own rows.
``local_weight`` other than 1 is not supported here yet.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from pyl2d import distributed as _dist_ops
from pyl2d._topk import pad_candidates
from pyl2d.distributed import _comm
from pyl2d.l2d.decode.recommender import L2DRecommender, Recommendations, pad_ids
from pyl2d.l2d.decode.representation import LatentTransform, fit_transform
from pyl2d.l2d.memory import ItemMemory
from pyl2d.ops import segment_mean


class ShardedL2DRecommender(L2DRecommender):
    """Every rank of ``group`` (None: the default group) constructs one with the same memory,
    catalog and options; then every rank calls :meth:`recommend` (or :meth:`rank`) together,
    each with its own queries (any number, none included)."""

    def __init__(self, *args, group=None, **kwargs):
        self.group = group
        self.rank_in_group, self.world = _comm.require_group(group)
        self._met = False  # whether this rank reached the ranks' meeting in _index
        try:
            if kwargs.get("local_weight", 1.0) != 1.0:
                raise ValueError("ShardedL2DRecommender supports local_weight=1 only (the paper's local aggregation)")
            super().__init__(*args, **kwargs)
        except Exception as exc:
            if self._met:
                raise
            # Failed before the meeting: attend it with the error, so that the other ranks,
            # waiting there, raise the same error instead of waiting forever.
            def fail():
                raise exc
            _comm.check_together(fail, group)
            raise

    def _index(self, memory: ItemMemory, n_items: int, transform: LatentTransform | None) -> None:
        self._met = True
        _comm.check_together(lambda: None, self.group)  # every rank got here (see __init__)
        device = self.extractor.device
        rank, world = self.rank_in_group, self.world
        _comm.agree({"transform given": int(transform is not None), "catalog size": n_items,
                     "memory entries": len(memory)}, self.group, _comm.comm_device(self.group, device))
        if transform is None:
            shared = [fit_transform(memory.vectors, self.representation) if rank == 0 else None]
            src = dist.get_global_rank(self.group, 0) if self.group is not None else 0
            dist.broadcast_object_list(shared, src=src, group=self.group)
            transform = shared[0]
        self.transform = transform
        self.owned_items, rows = _dist_ops.partition_by_item(memory.item_ids, n_items, world, rank)
        self.memory_index = rows.to(device)
        self.memory_vectors = self.transform(memory.vectors[rows].to(device))
        self.memory_item_ids = memory.item_ids[rows].to(device)  # global ids
        self.owned_items = self.owned_items.to(device)
        local_of = self.memory_item_ids // world  # owned item j * world + rank -> j
        means, counts = segment_mean(self.memory_vectors, local_of, self.owned_items.numel())
        self.counts = counts
        self.item_reps = means.to(self.dtype)  # [N_r, D]: the owned items' means
        decodable = counts > 0
        self.decodable_ids = self.owned_items[decodable]  # global ids, ascending
        self.decodable_reps = self.item_reps[decodable].contiguous()
        self.decodable_norms = torch.linalg.vector_norm(self.decodable_reps.float(), dim=1)
        totals = _comm.gather_ints([int(decodable.sum()), int((~decodable).sum())], self.group,
                                   _comm.comm_device(self.group, device))
        self.n_decodable = sum(t[0] for t in totals)
        self.n_undecodable = sum(t[1] for t in totals)

    def rank(self, vectors: torch.Tensor, k: int, exclude: torch.Tensor | None = None):
        """As :meth:`L2DRecommender.rank`, but every rank passes the SAME vectors (and
        exclude) and gets the same result: the search of all shards."""
        vectors = self.transform(vectors.to(self.memory_vectors.device)).to(self.dtype)
        if exclude is not None:
            exclude = exclude.to(vectors.device)
        if self.aggregation == "local":
            k_eff = min(k, len(self.catalog))
            scores, ids = _dist_ops.local_topk(vectors, self.memory_vectors, self.memory_item_ids, self.memory_index,
                                               self.owned_items, self.item_reps, k_eff, self.m, self.metric, exclude,
                                               group=self.group, check_disjoint=False)
        else:
            k_eff = min(k, self.n_decodable)
            scores, ids = _dist_ops.score_topk(vectors, self.decodable_reps, k_eff, self.metric, exclude,
                                               self.decodable_norms if self.metric != "ip" else None,
                                               local_ids=self.decodable_ids, num_ids=len(self.catalog),
                                               group=self.group, check_disjoint=False)
        return pad_candidates(scores, ids, k)

    def recommend(self, queries, k: int = 10, exclude_history: bool = True) -> Recommendations:
        """Top-k items for this rank's ``queries`` (see :meth:`L2DRecommender.recommend`);
        every rank of the group must call it at the same time. An empty list is allowed."""
        found = {}

        def check():  # on every rank together: one rank's bad input must not leave the others waiting
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self.catalog):
                raise ValueError(f"k={k!r} is out of range: it must be between 1 and the catalog size "
                                 f"{len(self.catalog)}")
            if not isinstance(queries, (list, tuple)) or len(queries):
                found["prompts"], found["histories"] = self._as_samples(queries)
        _comm.check_together(check, self.group)
        device = self.memory_vectors.device
        dim = self.extractor.hidden_size
        if found:
            histories = found["histories"]
            vectors = self.extractor.encode(found["prompts"], desc="queries").to(device, self.dtype)
        else:
            histories, vectors = None, torch.empty((0, dim), dtype=self.dtype, device=device)
        local_exclude = None
        if exclude_history and histories is not None:
            local_exclude = pad_ids(histories, device)
        all_vectors, counts = _dist_ops.gather_rows(vectors, self.group)
        if not all_vectors.shape[0]:  # no rank has a query: nothing to search
            return Recommendations(torch.empty((0, k), dtype=torch.int64), torch.empty((0, k)), [])
        width = max(w for (w,) in _comm.gather_ints([0 if local_exclude is None else local_exclude.shape[1]],
                                                     self.group, _comm.comm_device(self.group, device)))
        exclude = None
        if width:
            padded = torch.full((vectors.shape[0], width), -1, dtype=torch.int64, device=device)
            if local_exclude is not None:
                padded[:, :local_exclude.shape[1]] = local_exclude
            exclude, _ = _dist_ops.gather_rows(padded, self.group)
        scores, ids = self.rank(all_vectors, k, exclude)
        begin = sum(counts[:self.rank_in_group])
        mine = slice(begin, begin + vectors.shape[0])
        ids, scores = ids[mine], scores[mine]
        return Recommendations(ids, scores, [[self.catalog.title(i) if i >= 0 else None for i in row]
                                             for row in ids.tolist()])
