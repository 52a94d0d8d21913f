"""The L2D item memory: one hidden state per training sample, labelled with its target item.

Built once by streaming the training prompts through the model, stored as safetensors shards
(``vectors`` [n, D], ``item_ids`` [n] int64) plus ``manifest.json`` that records what produced
them (model fingerprint, layer, pooling, dtype, hidden size, count, data fingerprint).
Each shard is written under a temporary name and renamed into place, and the manifest is
rewritten (atomically too) after every shard, so a build that is interrupted resumes from
the last complete shard and loses nothing. Shards are read through ``safe_open``, which
memory-maps the files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Sequence

import torch

from pyl2d.l2d.data import Sample
from pyl2d.l2d.hidden import HiddenStateExtractor, fingerprint_config, hidden_size_of
from pyl2d.l2d.prompts import PromptTemplate, prompt_token_ids

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


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


def _write_json_atomic(path: pathlib.Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


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
        for key, value in (("layer", layer), ("pooling", pooling)):
            if value is not None and self.manifest[key] != value:
                raise ValueError(f"the memory was built with {key}={self.manifest[key]!r}, not {value!r}")

    @classmethod
    def load(cls, path: str | pathlib.Path, model=None) -> "ItemMemory":
        """Load a complete memory; with ``model``, also check it was built with that model."""
        from safetensors import safe_open

        path = pathlib.Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"no item memory at {path} (missing {MANIFEST})")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{manifest_path} has format version {manifest.get('format_version')}, "
                             f"this pyl2d reads {FORMAT_VERSION}")
        if not manifest.get("complete"):
            raise ValueError(f"the memory at {path} is incomplete ({len(manifest['shards'])} of "
                             f"{manifest['n_shards']} shards); run `pyl2d build-memory` again to resume it")
        vectors, ids = [], []
        for shard in manifest["shards"]:
            with safe_open(str(path / shard["file"]), framework="pt") as f:
                vectors.append(f.get_tensor("vectors"))
                ids.append(f.get_tensor("item_ids"))
        memory = cls(torch.cat(vectors) if len(vectors) > 1 else vectors[0],
                     torch.cat(ids) if len(ids) > 1 else ids[0], int(manifest["num_items"]), manifest)
        if len(memory) != manifest["count"] or memory.hidden_size != manifest["hidden_size"]:
            raise ValueError(f"the memory at {path} holds {len(memory)} x {memory.hidden_size} vectors but "
                             f"its manifest says {manifest['count']} x {manifest['hidden_size']}")
        if model is not None:
            memory.check_model(model)
        return memory


def build_memory(extractor: HiddenStateExtractor, samples: Sequence[Sample], num_items: int,
                 path: str | pathlib.Path, template: PromptTemplate, *, shard_size: int = 4096,
                 overwrite: bool = False, model_name: str = "", log=print) -> ItemMemory:
    """Encode every sample's prompt and store (hidden state, target id) pairs under ``path``.

    An existing complete memory made from the same model, data and settings is reused; an
    incomplete one resumes after its last complete shard; one made from anything else is an
    error unless ``overwrite``."""
    from safetensors.torch import save_file

    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    usable = [s for s in samples if s.history_titles]
    if not usable:
        raise ValueError("no training sample has a non-empty history: nothing to put in the memory")
    bad = [s.target_id for s in usable if not 0 <= s.target_id < num_items]
    if bad:
        raise ValueError(f"a training sample's target id {bad[0]} is outside the catalog of {num_items} items")
    path = pathlib.Path(path)
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
        old = json.loads(manifest_path.read_text())
        differing = [k for k in settings if old.get(k) != settings[k]]
        if differing:
            raise ValueError(f"{path} holds a memory built with different {', '.join(differing)}; "
                             "pass overwrite=True (--overwrite) or choose another path")
        for shard in old.get("shards", []):  # the longest prefix of shards still on disk
            if not (path / shard["file"]).is_file():
                break
            shards.append(shard)
        if old.get("complete") and len(shards) == settings["n_shards"]:
            log(f"memory at {path} is already complete ({old['count']} entries)")
            return ItemMemory.load(path)
        if shards:
            log(f"resuming the memory build at {path} after shard {len(shards)} of {settings['n_shards']}")
    path.mkdir(parents=True, exist_ok=True)

    def save_manifest(complete: bool) -> None:
        _write_json_atomic(manifest_path, {**settings, "shards": shards, "complete": complete,
                                           "count": sum(s["count"] for s in shards)})

    save_manifest(False)
    for index in range(len(shards), settings["n_shards"]):
        part = usable[index * shard_size:(index + 1) * shard_size]
        prompts = [template.prompt(s.history_titles, extractor.tokenizer) for s in part]
        vectors = extractor.encode_ids(prompt_token_ids(extractor.tokenizer, prompts),
                                       desc=f"memory shard {index + 1}/{settings['n_shards']}")
        ids = torch.tensor([s.target_id for s in part], dtype=torch.int64)
        name = f"shard-{index:05d}.safetensors"
        tmp = path / (name + ".tmp")
        save_file({"vectors": vectors.contiguous(), "item_ids": ids}, str(tmp))
        os.replace(tmp, path / name)
        shards.append({"file": name, "count": len(part)})
        save_manifest(False)
    save_manifest(True)
    return ItemMemory.load(path)
