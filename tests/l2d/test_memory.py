"""The item memory: save/load round trip, a build interrupted midway and resumed, mismatches."""
import dataclasses
import json

import pytest
import torch

from pyl2d.l2d.data.prompts import DEFAULT_PROMPT
from pyl2d.l2d.memory import MANIFEST, ItemMemory, build_memory
from pyl2d.l2d.model.hidden import HiddenStateExtractor

QUIET = dict(log=lambda *_: None)


def _extractor(tiny_model):
    model, tok = tiny_model
    return HiddenStateExtractor(model, tok, batch_size=8, progress=False)


def test_round_trip(tmp_path, tiny_model, tiny_data):
    ex = _extractor(tiny_model)
    mem = build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT,
                       shard_size=16, **QUIET)
    manifest = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["count"] == len(tiny_data.train) == len(mem)
    assert manifest["hidden_size"] == 32 and manifest["pooling"] == "last" and manifest["layer"] == "final"
    assert manifest["dtype"] == "float32" and len(manifest["shards"]) == -(-len(tiny_data.train) // 16)
    want = ex.encode([DEFAULT_PROMPT.prompt(s.history_titles) for s in tiny_data.train])
    loaded = ItemMemory.load(tmp_path / "m", model=tiny_model[0])
    torch.testing.assert_close(loaded.vectors, want, rtol=1e-5, atol=1e-5)
    assert loaded.item_ids.tolist() == [s.target_id for s in tiny_data.train]
    assert loaded.item_counts().sum() == len(loaded)


def test_interrupted_build_resumes_without_losing_work(tmp_path, tiny_model, tiny_data, monkeypatch):
    ex = _extractor(tiny_model)
    full = build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "full", DEFAULT_PROMPT,
                        shard_size=16, **QUIET)
    calls = {"n": 0}
    real = ex.encode_ids

    def dies_after_two(seqs, desc=""):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(seqs, desc)

    monkeypatch.setattr(ex, "encode_ids", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, shard_size=16, **QUIET)
    manifest = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert not manifest["complete"] and manifest["shards"] == []
    progress = (tmp_path / "m" / "progress-00000.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in progress] == [0, 1]  # two shards written and recorded
    with pytest.raises(ValueError, match="incomplete"):
        ItemMemory.load(tmp_path / "m")
    with open(tmp_path / "m" / "progress-00000.jsonl", "a") as f:
        f.write('{"index": 2, "count": 16, "sha')  # a torn write of the next entry
    calls["n"] = -100
    logs = []
    resumed = build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT,
                           shard_size=16, log=logs.append)
    assert any("resuming" in line and "2 of" in line for line in logs)
    assert any("torn write" in line for line in logs)
    assert calls["n"] == -100 + manifest["n_shards"] - 2  # only the missing shards were computed
    torch.testing.assert_close(resumed.vectors, full.vectors)
    assert torch.equal(resumed.item_ids, full.item_ids)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".build.lock", MANIFEST, "memory.safetensors"]


@pytest.mark.parametrize("call,failing", [("pwrite", 2), ("fsync", 1), ("fsync", 3)])
def test_a_full_disk_names_the_file_and_the_build_resumes_after_space_is_freed(tmp_path, tiny_model, tiny_data,
                                                                              monkeypatch, call, failing):
    """ENOSPC in the build's writes (the n-th pwrite or fsync of the build: the data file's
    creation, a shard, the progress log, the manifest): the error names the file (it said only
    '[Errno 28] No space left on device') and how to go on, and the rerun completes the memory."""
    import errno
    import os

    ex = _extractor(tiny_model)
    full = build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "full", DEFAULT_PROMPT,
                        shard_size=16, **QUIET)
    real, calls = getattr(os, call), {"n": 0}

    def write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, call, write)
    with pytest.raises(OSError, match="No space left on device") as info:
        build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, shard_size=16,
                     **QUIET)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename and info.value.filename.startswith(str(tmp_path / "m")), str(info.value)
    assert "run the build again" in str(info.value)
    monkeypatch.undo()
    resumed = build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT,
                           shard_size=16, **QUIET)
    torch.testing.assert_close(resumed.vectors, full.vectors)
    assert torch.equal(resumed.item_ids, full.item_ids)


def test_load_maps_the_file_whatever_the_shard_count(tmp_path, built_like):
    """A 64 MiB memory of 8 shards: loading costs almost no RAM, and the tensors are the file's."""
    import gc
    import resource  # noqa: F401  (Linux: /proc/self/statm below)

    path = built_like(tmp_path / "big", rows=131_072, dim=256, dtype="float16", shard_size=16_384)

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20
    gc.collect()
    before = rss_mib()
    memory = ItemMemory.load(path, verify=False)
    grown = rss_mib() - before
    assert len(memory) == 131_072 and memory.manifest["n_shards"] == 8
    assert grown < 16, f"loading raised RSS by {grown:.0f} MiB"
    assert memory.vectors[-1].float().abs().sum() > 0  # the last shard's rows are there
    memory.vectors[0, 0] = 1.0  # copy-on-write: the file itself never changes
    assert ItemMemory.load(path).vectors.shape == (131_072, 256)  # and still verifies


def test_mismatches_are_clear_errors(tmp_path, tiny_model, tiny_data):
    from transformers import LlamaConfig, LlamaForCausalLM

    model, tok = tiny_model
    ex = _extractor(tiny_model)
    build_memory(ex, tiny_data.train, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, **QUIET)
    cfg = model.config.to_dict()
    other = LlamaForCausalLM(LlamaConfig(**{**cfg, "torch_dtype": None})).eval()
    with pytest.raises(ValueError, match="fingerprint"):
        ItemMemory.load(tmp_path / "m", model=other)
    wider = LlamaForCausalLM(LlamaConfig(**{**cfg, "hidden_size": 48})).eval()
    with pytest.raises(ValueError, match="hidden size is 48"):
        ItemMemory.load(tmp_path / "m", model=wider)
    with pytest.raises(ValueError, match="different pooling"):
        build_memory(HiddenStateExtractor(model, tok, pooling="mean", progress=False), tiny_data.train,
                     len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, **QUIET)
    # Same ids, one item retitled: every prompt naming it changes, so the old memory is not reused.
    first = tiny_data.train[0]
    retitled = [dataclasses.replace(s, history_titles=tuple("renamed" if i == first.history_ids[0] else t
                                                            for i, t in zip(s.history_ids, s.history_titles)))
                for s in tiny_data.train]
    assert retitled != list(tiny_data.train)
    with pytest.raises(ValueError, match="different data_fingerprint"):
        build_memory(ex, retitled, len(tiny_data.catalog), tmp_path / "m", DEFAULT_PROMPT, **QUIET)
    with pytest.raises(FileNotFoundError):
        ItemMemory.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="outside the catalog"):
        build_memory(ex, tiny_data.train, 3, tmp_path / "small", DEFAULT_PROMPT, **QUIET)
