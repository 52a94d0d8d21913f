"""Building an item memory, in one process or data-parallel over a torch.distributed group.

Shard i holds training samples [i * shard_size, (i + 1) * shard_size) and is written in
place into the memory's one data file (:mod:`pyl2d.l2d.memory.datafile`), fsynced, and then
recorded as one line (index, count, sha256) appended and fsynced to the writer's progress
log ``progress-<rank>.jsonl``. When every shard is written, rank 0 writes the complete
manifest (atomically) and removes the logs.

So an interrupted build resumes with nothing lost and nothing encoded twice: the shards
whose log line is there and whose bytes still hash to it are kept, the rest are split among
the ranks of the new run (any number of them: shard i's place in the file does not depend
on who writes it), and the result is row-for-row the single-process one.

Distributed (``torchrun --nproc-per-node W -m pyl2d build-memory ...``, or a Python caller
with an initialised process group): rank 0 holds the folder's build lock, checks what is
there and tells the others which shards are left; every rank encodes its share on its own
device; a rank that fails makes every rank raise (after the others finished their shards,
which stay recorded), never hang.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
from typing import Sequence

import torch

from pyl2d.l2d._files import DISK_FULL, naming, write_atomic
from pyl2d.l2d.data.prompts import PromptTemplate, data_fingerprint, prompt_token_ids
from pyl2d.l2d.data.records import Sample
from pyl2d.l2d.memory import datafile
from pyl2d.l2d.memory.item_memory import MANIFEST, ItemMemory, model_fingerprint
from pyl2d.l2d.memory.lock import BuildLock
from pyl2d.l2d.memory.manifest import FORMAT_VERSION, MemoryFormatError, read_manifest
from pyl2d.l2d.model.hidden import HiddenStateExtractor, fingerprint_config

_STALE = re.compile(r"(shard-\d{5}\.safetensors(\.tmp)?|progress-\d{5}\.jsonl|memory\.safetensors\.tmp)")
_PROGRESS = re.compile(r"progress-\d{5}\.jsonl")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A progress line is ~100 bytes; a log far larger than one line per shard is not one of ours.
_MAX_LINE_BYTES = 512


@dataclasses.dataclass
class _Plan:
    settings: dict
    done: dict[int, dict]  # shard index -> its verified entry
    complete: bool          # an identical complete memory is already there


def _ranks(group) -> tuple[int, int]:
    import torch.distributed as dist

    if group is None and not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def _settings(extractor: HiddenStateExtractor, usable, num_items, template, shard_size, model_name) -> dict:
    model = extractor.model
    return {
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
        "total": len(usable),
        "file": datafile.DATA_FILE,
        "template": dataclasses.asdict(template),
    }


def _layout(settings: dict) -> datafile.Layout:
    return datafile.Layout(settings["total"], settings["hidden_size"], settings["dtype"], settings["shard_size"])


def _logged_entries(path: pathlib.Path, layout: datafile.Layout, n_shards: int, log) -> dict[int, dict]:
    """Every well-formed progress line under ``path`` (a torn last line is skipped)."""
    entries: dict[int, dict] = {}
    for file in sorted(path.iterdir()):
        if not (_PROGRESS.fullmatch(file.name) and file.is_file()):
            continue
        if file.stat().st_size > _MAX_LINE_BYTES * (n_shards + 1):
            raise MemoryFormatError(f"{file} is {file.stat().st_size} bytes, too large to be a progress log of "
                                    f"{n_shards} shards")
        for number, line in enumerate(file.read_bytes().split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                index, count, digest = entry["index"], entry["count"], entry["sha256"]
                ok = (type(index) is int and 0 <= index < n_shards and type(count) is int
                      and count == layout.rows(index)[1] - layout.rows(index)[0] and _SHA256.fullmatch(str(digest)))
            except (ValueError, KeyError, TypeError, RecursionError):
                ok = False
            if not ok:
                log(f"{file}:{number}: not a progress entry (a torn write?); ignored")
                continue
            entries[index] = {"index": index, "count": count, "sha256": digest}
    return entries


def _verified(data: pathlib.Path, layout: datafile.Layout, entries: dict[int, dict], log) -> dict[int, dict]:
    kept = {}
    for index in sorted(entries):
        if datafile.shard_digest(data, layout, index) == entries[index]["sha256"]:
            kept[index] = entries[index]
        else:
            log(f"{data} shard {index} does not match its recorded sha256: recomputing it")
    return kept


def _prepare(path: pathlib.Path, settings: dict, overwrite: bool, log) -> _Plan:
    """What is already built at ``path`` (rank 0, under the build lock)."""
    path.mkdir(parents=True, exist_ok=True)
    manifest_path, layout = path / MANIFEST, _layout(settings)
    data = path / settings["file"]
    old = None
    if manifest_path.is_file() and not overwrite:
        try:
            old = read_manifest(manifest_path)
        except MemoryFormatError as exc:
            raise MemoryFormatError(f"{exc}; pass overwrite=True (--overwrite) to rebuild it") from None
        # model_name is how the model was spelled (model/, ./model): a label, not a setting;
        # the model is identified by its fingerprint.
        keys = [k for k in settings if k not in ("format_version", "file", "total", "model_name")]
        differing = [k for k in keys if old.get(k) != settings[k]]
        if differing:
            raise ValueError(f"{path} holds a memory built with different {', '.join(differing)}; "
                             "pass overwrite=True (--overwrite) or choose another path")
        if old["format_version"] < FORMAT_VERSION:
            log(f"{path} holds a memory in format {old['format_version']}: rebuilding it in format "
                f"{FORMAT_VERSION} (one mapped file)")
            old = None
    done: dict[int, dict] = {}
    if old is not None and datafile.is_usable(data, layout):
        entries = {s["index"]: s for s in old["shards"]}
        entries.update(_logged_entries(path, layout, settings["n_shards"], log))
        done = _verified(data, layout, entries, log)
        if old["complete"] and len(done) == settings["n_shards"]:
            log(f"memory at {path} is already complete ({old['count']} entries)")
            return _Plan(settings, done, True)
        if done:
            log(f"resuming the memory build at {path}: {len(done)} of {settings['n_shards']} shards are done")
        # One log of the verified shards replaces the old ones, so no entry that failed its
        # check can come back when the manifest is written.
        write_atomic(path / "progress-00000.jsonl", b"".join(json.dumps(e).encode() + b"\n" for e in done.values()))
        for file in path.iterdir():
            if _PROGRESS.fullmatch(file.name) and file.name != "progress-00000.jsonl" and file.is_file():
                file.unlink()
    else:
        for file in path.iterdir():
            if _PROGRESS.fullmatch(file.name) and file.is_file():
                file.unlink()
        datafile.create(data, layout)
    _write_manifest(manifest_path, settings, [], complete=False)
    return _Plan(settings, done, False)


def _write_manifest(manifest_path: pathlib.Path, settings: dict, shards: list[dict], complete: bool) -> None:
    payload = {**settings, "shards": shards, "complete": complete, "count": sum(s["count"] for s in shards)}
    write_atomic(manifest_path, json.dumps(payload, indent=2).encode())


def _append_progress(log_path: pathlib.Path, entry: dict) -> None:
    line = json.dumps(entry).encode() + b"\n"
    created = not log_path.exists()
    with naming(log_path), open(log_path, "ab") as f:
        if f.tell() and _last_byte(log_path) != b"\n":
            f.write(b"\n")  # end a torn line of an earlier run before appending
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    if created:
        datafile.fsync_dir(log_path.parent)  # the new log's name is durable too


def _last_byte(path: pathlib.Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _encode_shards(extractor, usable, template, path: pathlib.Path, settings: dict, indices: Sequence[int],
                   rank: int) -> None:
    layout, data = _layout(settings), path / settings["file"]
    log_path = path / f"progress-{rank:05d}.jsonl"
    size, n = settings["shard_size"], settings["n_shards"]
    for index in indices:
        part = usable[index * size:(index + 1) * size]
        prompts = [template.prompt(s.history_titles, extractor.tokenizer) for s in part]
        vectors = extractor.encode_ids(prompt_token_ids(extractor.tokenizer, prompts),
                                       desc=f"memory shard {index + 1}/{n}")
        ids = torch.tensor([s.target_id for s in part], dtype=torch.int64)
        digest = datafile.write_shard(data, layout, index, ids, vectors.detach().cpu())
        _append_progress(log_path, {"index": index, "count": len(part), "sha256": digest})


def _finish(path: pathlib.Path, settings: dict, log) -> None:
    """Rank 0, every shard written (and logged): the complete manifest, then the logs go."""
    entries = _logged_entries(path, _layout(settings), settings["n_shards"], log)
    missing = [i for i in range(settings["n_shards"]) if i not in entries]
    if missing:
        raise RuntimeError(f"memory build at {path}: shards {missing[:10]} were not recorded; run it again to resume")
    _write_manifest(path / MANIFEST, settings, [entries[i] for i in range(settings["n_shards"])], complete=True)
    for file in path.iterdir():
        if _STALE.fullmatch(file.name) and file.is_file():
            file.unlink()


def build_memory(extractor: HiddenStateExtractor, samples: Sequence[Sample], num_items: int,
                 path: str | pathlib.Path, template: PromptTemplate, *, shard_size: int = 4096,
                 overwrite: bool = False, model_name: str = "", log=print, group=None) -> ItemMemory:
    """Encode every sample's prompt and store (hidden state, target id) pairs under ``path``.

    An existing complete memory made from the same model, data and settings is reused; an
    incomplete one resumes (see the module docstring); one made from anything else is an
    error unless ``overwrite``. The folder is locked for the whole build: a concurrent
    build of it is a MemoryBusyError. With a torch.distributed process group initialised
    (or ``group`` given), every rank calls this with the same arguments and encodes its
    share of the shards; all return the same mapped memory."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive int, got {shard_size!r}")
    usable = [s for s in samples if s.history_titles]
    if not usable:
        raise ValueError("no training sample has a non-empty history: nothing to put in the memory")
    bad = [s.target_id for s in usable if not 0 <= s.target_id < num_items]
    if bad:
        raise ValueError(f"a training sample's target id {bad[0]} is outside the catalog of {num_items} items")
    path = pathlib.Path(path)
    settings = _settings(extractor, usable, num_items, template, shard_size, model_name)
    try:
        return _build(extractor, usable, template, path, settings, overwrite, log, group)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise OSError(exc.errno, f"{exc.strerror} (free space and run the build again: it resumes after its last "
                                 f"complete shard)", exc.filename or str(path)) from exc


def _build(extractor, usable, template, path: pathlib.Path, settings: dict, overwrite: bool, log, group
           ) -> ItemMemory:
    rank, world = _ranks(group)
    if world == 1:
        with BuildLock(path):
            plan = _prepare(path, settings, overwrite, log)
            if not plan.complete:
                todo = [i for i in range(settings["n_shards"]) if i not in plan.done]
                _encode_shards(extractor, usable, template, path, settings, todo, rank)
                _finish(path, settings, log)
        return ItemMemory.load(path, verify=False)
    return _build_distributed(extractor, usable, template, path, settings, overwrite, log, group, rank, world)


def _build_distributed(extractor, usable, template, path, settings, overwrite, log, group, rank, world):
    import torch.distributed as dist

    def everyone(value):
        out = [None] * world
        dist.all_gather_object(out, value, group=group)
        return out

    def raise_if_failed(errors, stage):
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            detail = "; ".join(f"rank {r}: {e}" for r, e in failed)
            raise RuntimeError(f"distributed memory build at {path} failed while {stage}: {detail}")

    lock = BuildLock(path) if rank == 0 else None
    plan, error = None, None
    try:
        if rank == 0:
            lock.__enter__()
            plan = _prepare(path, settings, overwrite, log)
    except Exception as exc:  # noqa: BLE001 - reported on every rank below
        error = f"{type(exc).__name__}: {exc}"
        if lock is not None:
            lock.__exit__(None, None, None)
            lock = None
    shared = [plan.done if plan else None, plan.complete if plan else False, error, settings]
    dist.broadcast_object_list(shared, src=dist.get_global_rank(group, 0) if group is not None else 0, group=group)
    done, complete, error, rank0_settings = shared
    try:
        raise_if_failed([error], "checking the folder")
        if rank0_settings != settings:
            differing = [k for k in settings if rank0_settings.get(k) != settings[k]]
            error = f"this rank's {', '.join(differing)} differ from rank 0's"
        raise_if_failed(everyone(error), "comparing the ranks' settings")
        if not complete:
            todo = [i for i in range(settings["n_shards"]) if i not in done]
            try:
                _encode_shards(extractor, usable, template, path, settings, todo[rank::world], rank)
            except Exception as exc:  # noqa: BLE001
                error = f"{type(exc).__name__}: {exc}"
            raise_if_failed(everyone(error), "encoding")
            if rank == 0:
                try:
                    _finish(path, settings, log)
                except Exception as exc:  # noqa: BLE001
                    error = f"{type(exc).__name__}: {exc}"
            raise_if_failed(everyone(error), "writing the manifest")
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
    everyone(None)  # rank 0 has let go of the lock: the memory can be opened
    return ItemMemory.load(path, verify=False)

