"""The L2D item memory: one hidden state per training sample, labelled with its target item.

Built once by streaming the training prompts through the model (:mod:`pyl2d.l2d.memory.build`,
in one process or data-parallel), stored as one safetensors file (``item_ids`` [n] int64,
``vectors`` [n, D]; :mod:`pyl2d.l2d.memory.datafile`) plus ``manifest.json`` that records what
produced it (model fingerprint, layer, pooling, dtype, hidden size, count, data fingerprint)
and the sha256 of every shard of it. Loading maps the file: it costs O(manifest) RAM
whatever the memory's size, and pages are read when an op touches them. Every shard is
checked against its manifest entry on load (:mod:`pyl2d.l2d.memory.manifest`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import warnings
from typing import Sequence

import torch

from pyl2d.l2d.data.prompts import PromptTemplate
from pyl2d.l2d.memory import datafile
from pyl2d.l2d.model.hidden import fingerprint_config, hidden_size_of
from pyl2d.l2d.memory.manifest import (FORMAT_VERSION, MemoryFormatError, read_manifest, read_shard, shard_path,
                                       verify_shard_file)
from pyl2d.l2d.memory.lock import MemoryBusyError, check_not_building

MANIFEST = "manifest.json"
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors(\.tmp)?")
__all__ = ["MANIFEST", "ItemMemory", "model_fingerprint"]


def model_fingerprint(model) -> str:
    """A short hash of the model's config and a few values of every parameter: cheap to
    compute, and different for a different checkpoint of the same architecture."""
    h = hashlib.sha256(json.dumps(fingerprint_config(model), sort_keys=True).encode())
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            probe = torch.cat([flat[:32], flat[-32:]]).to("cpu", torch.float32)
            h.update(name.encode())
            h.update(str(tuple(p.shape)).encode())
            h.update(probe.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass
class ItemMemory:
    """Memory vectors [M, D] (model dtype), their item ids [M] int64, the catalog size and the
    manifest they were loaded from."""
    vectors: torch.Tensor
    item_ids: torch.Tensor
    num_items: int
    manifest: dict
    # The data file the tensors are mapped from, as it was when loaded (None: in RAM).
    mapped_from: datafile.FileState | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.vectors.dim() != 2 or self.item_ids.shape != (self.vectors.shape[0],):
            raise ValueError(f"memory vectors {tuple(self.vectors.shape)} and item_ids "
                             f"{tuple(self.item_ids.shape)} do not match")
        if self.vectors.shape[0] == 0:
            raise ValueError("the memory is empty: no training sample had a non-empty history")
        if int(self.item_ids.min()) < 0 or int(self.item_ids.max()) >= self.num_items:
            raise ValueError(f"memory item ids fall outside 0..{self.num_items - 1}")

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.vectors.shape[1]

    @property
    def template(self) -> PromptTemplate | None:
        """The prompt template the memory was built with (None if the manifest has none)."""
        stored = self.manifest.get("template")
        return PromptTemplate(**stored) if isinstance(stored, dict) else None

    def item_counts(self) -> torch.Tensor:
        """[num_items] int64: memory entries per item (0 = never a training target)."""
        return torch.bincount(self.item_ids, minlength=self.num_items)

    def check_unchanged(self) -> None:
        """MemoryFormatError if the file the tensors are mapped from was truncated, replaced or
        rewritten since it was loaded. Reading a mapped page past a truncated end kills the
        process (SIGBUS) and bytes rewritten in place would be searched as they are, so the
        recommenders check before every search (a ``stat``: microseconds)."""
        if self.mapped_from is not None:
            self.mapped_from.check()

    def check_catalog(self, catalog) -> None:
        """ValueError unless the memory was built for a catalog of ``len(catalog)`` items
        (checked before anything sized by ``num_items`` is allocated)."""
        if self.num_items != len(catalog):
            raise ValueError(f"the memory was built for {self.num_items} items but the catalog has {len(catalog)}")

    def check_model(self, model, layer=None, pooling=None) -> None:
        """ValueError if this memory was not built with ``model`` (and layer/pooling, if given)."""
        size = hidden_size_of(model)
        if size != self.hidden_size:
            raise ValueError(f"the memory holds {self.hidden_size}-dimensional hidden states but the model's "
                             f"hidden size is {size}: it was built with a different model")
        fp = model_fingerprint(model)
        if fp != self.manifest["model_fingerprint"]:
            raise ValueError(f"the memory was built with model {self.manifest.get('model_name') or '?'} "
                             f"(fingerprint {self.manifest['model_fingerprint']}) but this model's fingerprint is "
                             f"{fp}; rebuild it with `pyl2d build-memory`")
        if isinstance(layer, (tuple, list)):  # the manifest stores a mean of layers as a list
            layer = [int(i) for i in layer]
        for key, value in (("layer", layer), ("pooling", pooling)):
            if value is not None and self.manifest[key] != value:
                raise ValueError(f"the memory was built with {key}={self.manifest[key]!r}, not {value!r}")

    @classmethod
    def load(cls, path: str | pathlib.Path, model=None, *, verify: bool = True) -> "ItemMemory":
        """Load a complete memory; with ``model``, also check it was built with that model.

        Every shard is checked against the manifest (dtype, shape, count, ids); ``verify``
        also re-hashes each file against its sha256 (streaming, ~1 s per GB). Any problem is a
        :class:`MemoryFormatError`; a memory being built right now is a MemoryBusyError."""
        path = pathlib.Path(path)
        if not os.path.lexists(path / MANIFEST):  # present but not a regular file: read_manifest says so
            raise FileNotFoundError(f"no item memory at {path} (missing {MANIFEST})")
        check_not_building(path)
        try:
            memory = cls._read(path, verify)
        except MemoryFormatError:
            check_not_building(path)  # a build that started meanwhile explains it better
            raise
        if model is not None:
            memory.check_model(model)
        return memory

    @classmethod
    def _read(cls, path: pathlib.Path, verify: bool) -> "ItemMemory":
        manifest = read_manifest(path / MANIFEST)
        if not manifest["complete"]:
            raise ValueError(f"the memory at {path} is incomplete ({len(manifest['shards'])} of "
                             f"{manifest['n_shards']} shards); run `pyl2d build-memory` again to resume it")
        if manifest["format_version"] < 2:
            warnings.warn(f"the memory at {path} was written by an older pyl2d without shard checksums, so "
                          "corruption cannot be detected; rebuild it with `pyl2d build-memory --overwrite`",
                          stacklevel=3)
        try:
            PromptTemplate(**manifest["template"])
        except (TypeError, ValueError) as exc:
            raise MemoryFormatError(f"{path / MANIFEST}: its prompt template is invalid: {exc}") from None
        if manifest["format_version"] >= 3:
            vectors, ids, state = _read_single_file(path, manifest, verify)
            return cls(vectors, ids, manifest["num_items"], manifest, state)
        if len(manifest["shards"]) > 1:
            warnings.warn(f"the memory at {path} is in format {manifest['format_version']}, one file per shard, so "
                          "loading it copies every shard into RAM; rebuild it with `pyl2d build-memory` to map one "
                          "file instead", stacklevel=3)
        vectors, ids = [], []
        for shard in manifest["shards"]:
            file = shard_path(path, shard["file"])
            if verify:
                verify_shard_file(file, shard)
            v, i = read_shard(file, shard, manifest)
            vectors.append(v)
            ids.append(i)
        return cls(torch.cat(vectors) if len(vectors) > 1 else vectors[0],
                   torch.cat(ids) if len(ids) > 1 else ids[0], manifest["num_items"], manifest)


def _read_single_file(path: pathlib.Path, manifest: dict, verify: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, datafile.FileState]:
    """(vectors, item_ids, the file's state) mapped from a format-3 memory's data file, after
    checking its size, its header and (``verify``) every shard's sha256."""
    file = shard_path(path, manifest["file"])
    layout = datafile.Layout(manifest["total"], manifest["hidden_size"], manifest["dtype"], manifest["shard_size"])
    state = datafile.FileState.of(file)
    size = state.size
    if size != layout.size:
        raise MemoryFormatError(f"{file} is {size} bytes but the manifest's {manifest['total']} entries of "
                                f"{manifest['hidden_size']} {manifest['dtype']} make {layout.size} (truncated or "
                                "replaced); rebuild the memory")
    if not datafile.is_usable(file, layout):
        raise MemoryFormatError(f"{file}: its header does not match the manifest (dtype, shape or layout); "
                                "rebuild the memory")
    if verify:
        for shard in manifest["shards"]:
            if datafile.shard_digest(file, layout, shard["index"]) != shard["sha256"]:
                begin, end = layout.rows(shard["index"])
                raise MemoryFormatError(f"{file} is corrupted in shard {shard['index']} (entries {begin}..{end - 1}): "
                                        "its sha256 differs from the manifest's; rebuild the memory")
    vectors, ids = datafile.open_mapped(file)
    state.check()  # not rewritten while it was hashed and mapped
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= manifest["num_items"]):
        raise MemoryFormatError(f"{file}: item ids fall outside 0..{manifest['num_items'] - 1}")
    return vectors, ids, state

