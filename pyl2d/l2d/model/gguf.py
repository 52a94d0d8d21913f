"""GGUF checkpoints (llama.cpp-style model files) as pyl2d models.

A ``.gguf`` file, or a folder holding exactly one and no ``config.json``, is converted once
into a plain Hugging Face folder (``model.safetensors`` in float32, the dequantized values
exactly, + config + tokenizer) under the cache, and that folder is what every command loads.

- Key: the SHA-256 of the file's bytes (a renamed or copied file is found again; a file
  rewritten in place is a new model). Hashing reads the file once (about 0.2 s per 100 MB);
  the result is remembered per (path, size, mtime, inode) so a reload does not rehash.
- Cache: ``$PYL2D_GGUF_CACHE``, else ``$XDG_CACHE_HOME/pyl2d/gguf``, else ``~/.cache/pyl2d/gguf``.
- Atomic: conversion writes a private temporary folder beside the entry and renames it in
  when complete, under an exclusive lock on ``<key>.lock``; a crashed converter leaves only
  its temporary folder, which the next converter removes. Two converters of one file: the
  second waits and reuses the first one's folder.
- Bad input gets one line (:class:`GGUFError`): not a GGUF file, truncated, an architecture
  or a tensor type transformers cannot dequantize.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import struct
import uuid

MAGIC = b"GGUF"
_MARKER = "pyl2d-gguf.json"  # written last into the temporary folder: an entry without it is not ours


class GGUFError(ValueError):
    """A .gguf file that cannot become a model (the message names the file and why)."""


def cache_dir() -> pathlib.Path:
    env = os.environ.get("PYL2D_GGUF_CACHE")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "pyl2d" / "gguf"


def gguf_file_of(path: str | os.PathLike) -> pathlib.Path | None:
    """The GGUF file ``path`` stands for: itself when it is a file named ``*.gguf`` (or starting
    with the GGUF magic), the single ``*.gguf`` in a folder without ``config.json``, else None."""
    p = pathlib.Path(path)
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            return p
        with open(p, "rb") as f:
            return p if f.read(4) == MAGIC else None
    if p.is_dir() and not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
        found = sorted(q for q in p.iterdir() if q.suffix.lower() == ".gguf" and q.is_file())
        if len(found) > 1:
            raise GGUFError(f"{p} holds {len(found)} .gguf files ({', '.join(q.name for q in found[:4])}); "
                            "give the one to load")
        return found[0] if found else None
    return None


def check_gguf(path: pathlib.Path) -> dict:
    """Header facts ({"architecture", "tensor_types"}) of a GGUF file that transformers can
    dequantize; GGUFError otherwise. Bounded: counts are checked against the file size before
    the reader walks them, and every tensor must lie inside the file (a truncated download)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:4] != MAGIC:
        raise GGUFError(f"{path} is not a GGUF file (it does not start with the GGUF magic)")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3 are)")
    if n_tensors * 24 + n_kv * 12 > size:
        raise GGUFError(f"{path} is truncated or corrupt: its header announces {n_tensors} tensors and {n_kv} "
                        f"metadata entries, more than {size} bytes can hold")
    try:
        import numpy as np
        from gguf import GGML_QUANT_SIZES, GGUFReader, dequantize
    except ImportError:
        raise GGUFError(f"{path}: reading GGUF files needs the gguf package (pip install gguf)") from None
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # the reader's own errors are bare (reshape, struct, KeyError)
        raise GGUFError(f"{path} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:120]})") from None
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise GGUFError(f"{path} is truncated: tensor {t.name} ends at byte {t.data_offset + t.n_bytes}, "
                            f"the file has {size}")
    field = reader.get_field("general.architecture")
    if field is None:
        raise GGUFError(f"{path} names no general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    types = sorted({t.tensor_type for t in reader.tensors}, key=int)
    for qtype in types:
        block, type_size = GGML_QUANT_SIZES[qtype]
        try:
            dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
        except NotImplementedError:
            raise GGUFError(f"{path}: tensor type {qtype.name} cannot be dequantized by the installed gguf "
                            "package; convert the file to another quantization (e.g. Q8_0 or F16)") from None
        except Exception:
            pass  # a plain float/int view of a zero row: supported
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    aliases = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and aliases.get(arch) not in GGUF_SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{path}: architecture {arch!r} cannot be loaded from GGUF by transformers "
                        f"(supported: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})")
    return {"architecture": arch, "tensor_types": [q.name for q in types]}


def fingerprint(path: pathlib.Path, root: pathlib.Path) -> str:
    """SHA-256 of the file's bytes, remembered under ``root/by-stat`` per (path, size, mtime, inode)."""
    st = path.stat()
    stat_key = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"
                              .encode()).hexdigest()
    memo = root / "by-stat" / stat_key
    try:
        known = memo.read_text().strip()
        if len(known) == 64:
            return known
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{stat_key}.{uuid.uuid4().hex}")
        tmp.write_text(value)
        os.replace(tmp, memo)
    except OSError:
        pass  # a read-only cache still converts; it only rehashes next time
    return value


def _convert(source: pathlib.Path, out: pathlib.Path, facts: dict) -> None:
    """Dequantize ``source`` with transformers and save a plain model + tokenizer into ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                      local_files_only=True)
    except (ValueError, NotImplementedError, KeyError, OSError) as exc:
        raise GGUFError(f"{source}: transformers cannot load it as a causal LM "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)  # the saved weights are plain float32
    config = AutoConfig.for_model(**config)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True, strict=True)
    plain.tie_weights()
    del loaded
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def resolve(path: str | os.PathLike, log=None) -> str:
    """``path`` itself when it is not a GGUF checkpoint, else the cached converted folder
    (converting it on first use)."""
    source = gguf_file_of(path)
    if source is None:
        return str(path)
    facts = check_gguf(source)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    key = fingerprint(source, root)[:32]
    entry = root / key
    if (entry / _MARKER).is_file():
        return str(entry)
    import fcntl

    with open(root / f"{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the OS if this process dies
        if (entry / _MARKER).is_file():
            return str(entry)
        for stale in root.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if entry.exists():  # not ours (no marker): set aside rather than trust it
            shutil.rmtree(entry, ignore_errors=True)
        tmp = root / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if log:
            log(f"converting {source.name} ({facts['architecture']}, {', '.join(facts['tensor_types'])}) "
                f"into {entry} (once)")
        try:
            _convert(source, tmp, facts)
            (tmp / _MARKER).write_text(json.dumps({"source": source.name, "size": source.stat().st_size,
                                                   "sha256_prefix": key, **facts}, indent=1))
            os.replace(tmp, entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(entry)
