"""Checks of an item memory's files: the manifest's shape, and every shard against its entry.

Each problem is one :class:`MemoryFormatError` naming the file. Format 3 (what builds
write): one data file named by ``file`` (:mod:`pyl2d.l2d.memory.datafile`), each shard entry
its ``index``, entry count and the sha256 of its byte ranges in that file. Formats 1 and 2
(read for old memories): one safetensors file per shard, each entry its file name, count,
byte size and (format 2) sha256. Loading re-hashes in 1 MiB chunks (streaming speed: about
a second per GB) before reading. Format 1 has no checksums: it loads with a warning, every
other check still applies.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import re

from pyl2d._codes import POOL_MODES
from pyl2d._io import read_json

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
MAX_MANIFEST_BYTES = 64 << 20  # a manifest is ~150 bytes per shard; anything larger is not one
# Bounds on the size fields, before anything is sized by them (num_items 10**12 asked for 8 TB):
# far past real memories (10^9 entries, catalogs of millions, hidden sizes of thousands).
MAX_SIZE_FIELDS = {"hidden_size": 2 ** 20, "num_items": 2 ** 31, "n_shards": 2 ** 40, "count": 2 ** 40,
                   "shard_size": 2 ** 40}
MAX_NAME_CHARS = 4096
_FINGERPRINT = re.compile(r"[0-9a-f]{16,64}")
DTYPES = ("float32", "float16", "bfloat16", "float64")
POOLINGS = POOL_MODES
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class MemoryFormatError(ValueError):
    """An item memory's manifest or a shard is malformed, corrupted or inconsistent."""


def sha256_file(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: pathlib.Path) -> dict:
    """The manifest at ``path``, parsed and checked (MemoryFormatError if it is not one)."""
    try:  # a regular file of at most MAX_MANIFEST_BYTES, strict JSON (a key twice is an error)
        manifest = read_json(path, MAX_MANIFEST_BYTES, "a memory manifest")
    except ValueError as exc:  # also an integer too long for int()
        raise MemoryFormatError(str(exc)) from None
    check_manifest(manifest, path)
    return manifest


def _expect(manifest: dict, key: str, kind, where) -> object:
    value = manifest.get(key)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise MemoryFormatError(f"{where}: {key!r} must be {names}, got {type(value).__name__} {value!r:.60}")
    return value


def check_manifest(manifest, path: pathlib.Path) -> None:
    """MemoryFormatError unless ``manifest`` has every field, with the right types and sane,
    mutually consistent values."""
    if not isinstance(manifest, dict):
        raise MemoryFormatError(f"{path}: a manifest is a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise MemoryFormatError(f"{path} has format version {version!r}; this pyl2d reads "
                                f"{', '.join(map(str, READABLE_VERSIONS))} (rebuild it with `pyl2d build-memory`)")
    for key, kind in (("complete", bool), ("model_fingerprint", str), ("pooling", str), ("dtype", str),
                      ("layer", (str, int, list)), ("template", dict), ("shards", list)):
        _expect(manifest, key, kind, path)
    for key in ("hidden_size", "num_items", "n_shards", "count", "shard_size"):
        if _expect(manifest, key, int, path) < (0 if key == "count" else 1):
            raise MemoryFormatError(f"{path}: {key!r} must be positive, got {manifest[key]}")
        if manifest[key] > MAX_SIZE_FIELDS[key]:
            raise MemoryFormatError(f"{path}: {key!r} is {manifest[key]!r:.30}, past any memory pyl2d builds "
                                    f"(at most {MAX_SIZE_FIELDS[key]})")
    if not _FINGERPRINT.fullmatch(manifest["model_fingerprint"]):
        raise MemoryFormatError(f"{path}: model_fingerprint {manifest['model_fingerprint']!r:.60} is not the short hex "
                                "digest pyl2d writes")
    if len(str(manifest.get("model_name", ""))) > MAX_NAME_CHARS:
        raise MemoryFormatError(f"{path}: model_name is over {MAX_NAME_CHARS} characters")
    layer = manifest["layer"]  # a str, an int or a list (of ints: a mean of hidden states), checked above
    if isinstance(layer, bool) or (isinstance(layer, str) and layer != "final") or (isinstance(layer, list) and (
            not layer or any(isinstance(i, bool) or not isinstance(i, int) for i in layer))):
        raise MemoryFormatError(f"{path}: layer must be 'final' or a hidden_states index (or a non-empty "
                                f"list of them), got {layer!r:.60}")
    if manifest["pooling"] not in POOLINGS:
        raise MemoryFormatError(f"{path}: pooling {manifest['pooling']!r:.60} is not one of {', '.join(POOLINGS)}")
    if manifest["dtype"] not in DTYPES:
        raise MemoryFormatError(f"{path}: dtype {manifest['dtype']!r} is not one of {', '.join(DTYPES)}")
    shards, seen = manifest["shards"], set()
    if len(shards) > manifest["n_shards"]:
        raise MemoryFormatError(f"{path} lists {len(shards)} shards but n_shards is {manifest['n_shards']}")
    if version >= 3:
        _check_single_file(manifest, path)
        return
    for i, shard in enumerate(shards):
        where = f"{path} shards[{i}]"
        if not isinstance(shard, dict):
            raise MemoryFormatError(f"{where}: a shard entry is a JSON object, got {type(shard).__name__}")
        name = _expect(shard, "file", str, where)
        check_shard_name(name, where)
        if name in seen:
            raise MemoryFormatError(f"{where}: shard {name!r} is listed twice")
        seen.add(name)
        if _expect(shard, "count", int, where) < 1:
            raise MemoryFormatError(f"{where}: count must be positive, got {shard['count']}")
        if version >= 2:
            if not _SHA256.fullmatch(str(_expect(shard, "sha256", str, where))):
                raise MemoryFormatError(f"{where}: sha256 {shard['sha256']!r:.80} is not a hex digest")
            _expect(shard, "bytes", int, where)
    total = sum(s["count"] for s in shards)
    if total != manifest["count"]:
        raise MemoryFormatError(f"{path}: its shards hold {total} entries but 'count' says {manifest['count']}")
    if manifest["complete"] and len(shards) != manifest["n_shards"]:
        raise MemoryFormatError(f"{path} says complete but lists {len(shards)} of {manifest['n_shards']} shards")


def _check_single_file(manifest: dict, path: pathlib.Path) -> None:
    """Format 3: one data file; shard entries (index, count, sha256) in index order."""
    check_shard_name(_expect(manifest, "file", str, path), path)
    if _expect(manifest, "total", int, path) < 1:
        raise MemoryFormatError(f"{path}: 'total' must be positive, got {manifest['total']}")
    size, n_shards, total = manifest["shard_size"], manifest["n_shards"], manifest["total"]
    if n_shards != -(-total // size):
        raise MemoryFormatError(f"{path}: n_shards is {n_shards} but {total} entries in shards of {size} make "
                                f"{-(-total // size)}")
    for i, shard in enumerate(manifest["shards"]):
        where = f"{path} shards[{i}]"
        if not isinstance(shard, dict):
            raise MemoryFormatError(f"{where}: a shard entry is a JSON object, got {type(shard).__name__}")
        if _expect(shard, "index", int, where) != i:
            raise MemoryFormatError(f"{where}: index is {shard['index']}, expected {i} (entries in shard order)")
        want = min(size, total - i * size)
        if _expect(shard, "count", int, where) != want:
            raise MemoryFormatError(f"{where}: count is {shard['count']}, expected {want}")
        if not _SHA256.fullmatch(str(_expect(shard, "sha256", str, where))):
            raise MemoryFormatError(f"{where}: sha256 {shard['sha256']!r:.80} is not a hex digest")
    counted = sum(s["count"] for s in manifest["shards"])
    if counted != manifest["count"]:
        raise MemoryFormatError(f"{path}: its shards hold {counted} entries but 'count' says {manifest['count']}")
    if manifest["complete"] and (len(manifest["shards"]) != n_shards or counted != total):
        raise MemoryFormatError(f"{path} says complete but lists {len(manifest['shards'])} of {n_shards} shards")


def check_shard_name(name: str, where) -> None:
    """A shard is a plain file name inside the memory folder: no folder part, no ``..``."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or pathlib.PurePath(name).is_absolute()):
        raise MemoryFormatError(f"{where}: shard file {name!r} must be a plain file name inside the memory folder")


def shard_path(folder: pathlib.Path, name: str) -> pathlib.Path:
    """``folder/name``, checked to be a regular file that (through any symlink) stays inside."""
    check_shard_name(name, folder / "manifest.json")
    path = folder / name
    if not path.is_file():
        raise MemoryFormatError(f"shard {path} is missing (or not a regular file)")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise MemoryFormatError(f"shard {path} resolves to {path.resolve()}, outside the memory folder")
    return path


def verify_shard_file(path: pathlib.Path, shard: dict) -> None:
    """MemoryFormatError if the file's size or sha256 differ from its manifest entry."""
    if "sha256" not in shard:
        return
    size = path.stat().st_size
    if size != shard["bytes"]:
        raise MemoryFormatError(f"shard {path} is {size} bytes but the manifest says {shard['bytes']} "
                                "(truncated or replaced); rebuild the memory")
    digest = sha256_file(path)
    if digest != shard["sha256"]:
        raise MemoryFormatError(f"shard {path} is corrupted: its sha256 is {digest[:16]}..., the manifest "
                                f"says {shard['sha256'][:16]}...; rebuild the memory")


def read_shard(path: pathlib.Path, shard: dict, manifest: dict):
    """(vectors [count, D], item_ids [count] int64) from a shard, checked against its entry."""
    import torch
    from safetensors import SafetensorError, safe_open

    want = {"vectors": (getattr(torch, manifest["dtype"]), (shard["count"], manifest["hidden_size"])),
            "item_ids": (torch.int64, (shard["count"],))}
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if keys != set(want):
                raise MemoryFormatError(f"shard {path} holds tensors {sorted(keys)}, expected {sorted(want)}")
            tensors = {key: f.get_tensor(key) for key in want}
    except SafetensorError as exc:
        raise MemoryFormatError(f"shard {path} is not a readable safetensors file: {exc}") from None
    for key, (dtype, shape) in want.items():
        t = tensors[key]
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise MemoryFormatError(f"shard {path}: {key} is {str(t.dtype).replace('torch.', '')} "
                                    f"{tuple(t.shape)}, the manifest says {str(dtype).replace('torch.', '')} {shape}")
    ids = tensors["item_ids"]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= manifest["num_items"]):
        raise MemoryFormatError(f"shard {path}: item ids fall outside 0..{manifest['num_items'] - 1}")
    return tensors["vectors"], ids
