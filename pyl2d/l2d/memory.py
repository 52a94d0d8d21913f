"""The L2D item memory: one hidden state per training sample, labelled with its target item.

Built once by streaming the training prompts through the model, stored as safetensors shards
(``vectors`` [n, D], ``item_ids`` [n] int64) plus ``manifest.json`` that records what produced
them (model fingerprint, layer, pooling, dtype, hidden size, count, data fingerprint).
Each shard is written under a temporary name, fsynced and renamed into place, and the
manifest is rewritten (atomically too) after every shard, so a build that is interrupted
resumes from the last complete shard and loses nothing. A build locks its folder
(:mod:`pyl2d.l2d.memory_lock`); every shard is checked against its manifest entry, sha256
included, on load and when a build resumes (:mod:`pyl2d.l2d.memory_format`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re
import warnings
from typing import Sequence

import torch

from pyl2d.l2d.data import Sample
from pyl2d.l2d.hidden import HiddenStateExtractor, fingerprint_config, hidden_size_of
from pyl2d.l2d.memory_format import (FORMAT_VERSION, MemoryFormatError, read_manifest, read_shard, shard_path,
                                     verify_shard_file)
from pyl2d.l2d.memory_lock import BuildLock, MemoryBusyError, check_not_building, write_atomic
from pyl2d.l2d.prompts import PromptTemplate, prompt_token_ids

MANIFEST = "manifest.json"
_SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors(\.tmp)?")
__all__ = ["FORMAT_VERSION", "MANIFEST", "ItemMemory", "MemoryBusyError", "MemoryFormatError", "build_memory",
           "data_fingerprint", "model_fingerprint"]


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


def data_fingerprint(samples: Sequence[Sample], template: PromptTemplate) -> str:
    h = hashlib.sha256(json.dumps(dataclasses.asdict(template), sort_keys=True).encode())
    for s in samples:
        h.update(repr((s.history_ids, s.target_id)).encode())
    return h.hexdigest()[:16]


def _write_manifest(path: pathlib.Path, payload: dict) -> None:
    write_atomic(path, json.dumps(payload, indent=2).encode())


@dataclasses.dataclass
class ItemMemory:
    """Memory vectors [M, D] (model dtype), their item ids [M] int64, the catalog size and the
    manifest they were loaded from."""
    vectors: torch.Tensor
    item_ids: torch.Tensor
    num_items: int
    manifest: dict

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
        if not (path / MANIFEST).is_file():
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


def _kept_shards(path: pathlib.Path, old: dict, log) -> list[dict]:
    """The longest prefix of ``old``'s shards whose files pass every check, sha256 included."""
    kept = []
    for index, shard in enumerate(old["shards"]):
        if "sha256" not in shard:
            log(f"{path} was written by an older pyl2d without shard checksums: recomputing from shard {index}")
            break
        try:
            file = shard_path(path, shard["file"])
            verify_shard_file(file, shard)
            read_shard(file, shard, old)
        except MemoryFormatError as exc:
            log(f"{exc}: recomputing from shard {index}")
            break
        kept.append(shard)
    return kept


def _remove_stale_shards(path: pathlib.Path, shards: list[dict]) -> None:
    """Delete shard files of an earlier build that the manifest no longer lists."""
    listed = {s["file"] for s in shards}
    for file in path.iterdir():
        if _SHARD_NAME.fullmatch(file.name) and file.name not in listed and file.is_file():
            file.unlink()


def build_memory(extractor: HiddenStateExtractor, samples: Sequence[Sample], num_items: int,
                 path: str | pathlib.Path, template: PromptTemplate, *, shard_size: int = 4096,
                 overwrite: bool = False, model_name: str = "", log=print) -> ItemMemory:
    """Encode every sample's prompt and store (hidden state, target id) pairs under ``path``.

    An existing complete memory made from the same model, data and settings is reused; an
    incomplete one resumes after its last complete shard that passes its checks; one made
    from anything else is an error unless ``overwrite``. The folder is locked for the whole
    build: a concurrent build of it is a MemoryBusyError."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive int, got {shard_size!r}")
    usable = [s for s in samples if s.history_titles]
    if not usable:
        raise ValueError("no training sample has a non-empty history: nothing to put in the memory")
    bad = [s.target_id for s in usable if not 0 <= s.target_id < num_items]
    if bad:
        raise ValueError(f"a training sample's target id {bad[0]} is outside the catalog of {num_items} items")
    path = pathlib.Path(path)
    with BuildLock(path):
        return _build_locked(extractor, usable, num_items, path, template, shard_size, overwrite, model_name, log)


def _build_locked(extractor, usable, num_items, path, template, shard_size, overwrite, model_name, log):
    from safetensors.torch import save

    model = extractor.model
    settings = {
        "format_version": FORMAT_VERSION,
        "model_fingerprint": model_fingerprint(model),
        "model_name": model_name or str(getattr(model.config, "_name_or_path", "")),
        "model_info": fingerprint_config(model),
        "data_fingerprint": data_fingerprint(usable, template),
        "layer": extractor.describe()["layer"],
        "pooling": extractor.pooling,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "hidden_size": extractor.hidden_size,
        "num_items": int(num_items),
        "shard_size": int(shard_size),
        "n_shards": (len(usable) + shard_size - 1) // shard_size,
        "template": dataclasses.asdict(template),
    }
    manifest_path = path / MANIFEST
    shards: list[dict] = []
    if manifest_path.is_file() and not overwrite:
        try:
            old = read_manifest(manifest_path)
        except MemoryFormatError as exc:
            raise MemoryFormatError(f"{exc}; pass overwrite=True (--overwrite) to rebuild it") from None
        differing = [k for k in settings if k != "format_version" and old.get(k) != settings[k]]
        if differing:
            raise ValueError(f"{path} holds a memory built with different {', '.join(differing)}; "
                             "pass overwrite=True (--overwrite) or choose another path")
        shards = _kept_shards(path, old, log)
        if old["complete"] and len(shards) == settings["n_shards"]:
            log(f"memory at {path} is already complete ({old['count']} entries)")
            return ItemMemory._read(path, verify=False)  # every shard was just verified
        if shards:
            log(f"resuming the memory build at {path} after shard {len(shards)} of {settings['n_shards']}")

    def save_manifest(complete: bool) -> None:
        _write_manifest(manifest_path, {**settings, "shards": shards, "complete": complete,
                                        "count": sum(s["count"] for s in shards)})

    save_manifest(False)
    for index in range(len(shards), settings["n_shards"]):
        part = usable[index * shard_size:(index + 1) * shard_size]
        prompts = [template.prompt(s.history_titles, extractor.tokenizer) for s in part]
        vectors = extractor.encode_ids(prompt_token_ids(extractor.tokenizer, prompts),
                                       desc=f"memory shard {index + 1}/{settings['n_shards']}")
        ids = torch.tensor([s.target_id for s in part], dtype=torch.int64)
        name = f"shard-{index:05d}.safetensors"
        data = save({"vectors": vectors.contiguous(), "item_ids": ids})
        write_atomic(path / name, data)
        shards.append({"file": name, "count": len(part), "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()})
        save_manifest(False)
    save_manifest(True)
    _remove_stale_shards(path, shards)
    return ItemMemory._read(path, verify=True)
