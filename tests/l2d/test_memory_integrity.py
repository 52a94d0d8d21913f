"""A memory's files are checked, not trusted: corrupted, inconsistent or escaping shards and
malformed manifests are one MemoryFormatError naming the file; a build locks its folder."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from pyl2d.l2d.hidden import HiddenStateExtractor
from pyl2d.l2d.memory import MANIFEST, ItemMemory, MemoryBusyError, MemoryFormatError, build_memory
from pyl2d.l2d.prompts import DEFAULT_PROMPT

QUIET = dict(log=lambda *_: None)


def _extractor(tiny_model, pooling="last"):
    model, tok = tiny_model
    return HiddenStateExtractor(model, tok, pooling=pooling, batch_size=8, progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model, tiny_data):
    path = tmp_path_factory.mktemp("built") / "m"
    build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), path, DEFAULT_PROMPT,
                 shard_size=16, **QUIET)
    return path


@pytest.fixture
def mem(built, tmp_path):
    """A fresh copy of the built memory, free to damage."""
    return shutil.copytree(built, tmp_path / "m")


def _manifest(mem):
    return json.loads((mem / MANIFEST).read_text())


def _write_manifest(mem, manifest):
    (mem / MANIFEST).write_text(json.dumps(manifest))


def _rehash(mem, manifest, index):
    """Make the manifest entry match the (rewritten) file, as a careless tool would."""
    import hashlib

    data = (mem / manifest["shards"][index]["file"]).read_bytes()
    manifest["shards"][index].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_manifest_records_checksums_and_a_lock_file(built):
    manifest = _manifest(built)
    assert manifest["format_version"] == 2
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in manifest["shards"])
    assert (built / ".build.lock").is_file()


def test_shard_listed_twice_is_rejected(mem):
    manifest = _manifest(mem)
    manifest["shards"].append(dict(manifest["shards"][0]))
    manifest["n_shards"] += 1
    manifest["count"] += manifest["shards"][0]["count"]
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match=r"shard-00000\.safetensors.* listed twice"):
        ItemMemory.load(mem)


def test_int32_shard_is_not_promoted(mem):
    from safetensors.torch import load_file, save_file

    manifest = _manifest(mem)
    file = mem / manifest["shards"][1]["file"]
    tensors = load_file(str(file))
    save_file({"vectors": tensors["vectors"], "item_ids": tensors["item_ids"].to(torch.int32)}, str(file))
    _rehash(mem, manifest, 1)
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match=r"shard-00001\.safetensors: item_ids is int32"):
        ItemMemory.load(mem)


def test_flipped_byte_is_detected(mem):
    file = mem / "shard-00001.safetensors"
    data = bytearray(file.read_bytes())
    data[-3] ^= 0x40
    file.write_bytes(bytes(data))
    with pytest.raises(MemoryFormatError, match=r"shard-00001\.safetensors is corrupted"):
        ItemMemory.load(mem)
    assert len(ItemMemory.load(mem, verify=False)) == _manifest(mem)["count"]  # verify=False skips hashing


def test_truncated_shard_is_a_format_error(mem):
    file = mem / "shard-00000.safetensors"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(MemoryFormatError, match=r"shard-00000\.safetensors is 100 bytes"):
        ItemMemory.load(mem)
    with pytest.raises(MemoryFormatError, match=r"shard-00000\.safetensors is not a readable safetensors"):
        ItemMemory.load(mem, verify=False)


def test_shard_with_the_wrong_shape_is_rejected(mem):
    from safetensors.torch import load_file, save_file

    manifest = _manifest(mem)
    file = mem / manifest["shards"][0]["file"]
    tensors = load_file(str(file))
    save_file({"vectors": tensors["vectors"][:, :16].contiguous(), "item_ids": tensors["item_ids"]}, str(file))
    _rehash(mem, manifest, 0)
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match=r"vectors is float32 \(16, 16\), the manifest says float32 \(16, 32\)"):
        ItemMemory.load(mem)


@pytest.mark.parametrize("edit,message", [
    (lambda m: [], "a manifest is a JSON object"),
    (lambda m: {**m, "shards": "shard-00000.safetensors"}, "'shards' must be list"),
    (lambda m: {**m, "shards": [5]}, r"shards\[0\]: a shard entry is a JSON object"),
    (lambda m: {**m, "shards": [{**m["shards"][0], "file": 3}] + m["shards"][1:]}, "'file' must be str"),
    (lambda m: {**m, "count": "many"}, "'count' must be int"),
    (lambda m: {**m, "hidden_size": -4}, "'hidden_size' must be positive"),
    (lambda m: {**m, "count": m["count"] + 1}, "its shards hold"),
    (lambda m: {k: v for k, v in m.items() if k != "num_items"}, "'num_items' must be int"),
    (lambda m: {**m, "dtype": "int8"}, "dtype 'int8'"),
    (lambda m: {**m, "layer": "penultimate"}, "layer must be 'final' or a hidden_states index"),
    (lambda m: {**m, "layer": [-2, "x"]}, "layer must be 'final' or a hidden_states index"),
    (lambda m: {**m, "layer": []}, "layer must be 'final' or a hidden_states index"),
    (lambda m: {**m, "pooling": "max"}, "pooling 'max' is not one of"),
    (lambda m: {**m, "format_version": 99}, "format version 99"),
    (lambda m: {**m, "template": {"bogus": 1}}, "prompt template is invalid"),
    (lambda m: {**m, "shards": [{k: v for k, v in m["shards"][0].items() if k != "sha256"}] + m["shards"][1:]},
     "'sha256' must be str"),
])
def test_manifest_of_the_wrong_shape_is_one_clear_error(mem, edit, message):
    _write_manifest(mem, edit(_manifest(mem)))
    with pytest.raises(MemoryFormatError, match=message) as info:
        ItemMemory.load(mem)
    assert str(mem / MANIFEST) in str(info.value)


@pytest.mark.parametrize("content", [b"{\"format_version\": 2, \xff", b"[" * 100_000 + b"]" * 100_000])
def test_manifest_that_is_not_json(mem, content):
    (mem / MANIFEST).write_bytes(content)
    with pytest.raises(MemoryFormatError, match="not valid JSON"):
        ItemMemory.load(mem)


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/shard.safetensors", ".."])
def test_shard_paths_cannot_leave_the_folder(mem, name):
    (mem.parent / "outside.safetensors").write_bytes((mem / "shard-00000.safetensors").read_bytes())
    manifest = _manifest(mem)
    manifest["shards"][0]["file"] = name
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match="plain file name inside the memory folder"):
        ItemMemory.load(mem)


def test_symlinked_shard_cannot_escape(mem):
    outside = mem.parent / "elsewhere.safetensors"
    shutil.move(mem / "shard-00000.safetensors", outside)
    (mem / "shard-00000.safetensors").symlink_to(outside)
    with pytest.raises(MemoryFormatError, match="outside the memory folder"):
        ItemMemory.load(mem)


def test_resumed_build_rechecks_the_shards_it_keeps(mem, tiny_model, tiny_data, built):
    manifest = _manifest(mem)
    manifest["complete"] = False
    _write_manifest(mem, manifest)
    file = mem / "shard-00001.safetensors"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01
    file.write_bytes(bytes(data))
    logs = []
    resumed = build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), mem, DEFAULT_PROMPT,
                           shard_size=16, log=logs.append)
    assert any("shard-00001.safetensors is corrupted" in line and "recomputing from shard 1" in line for line in logs)
    want = ItemMemory.load(built)
    torch.testing.assert_close(resumed.vectors, want.vectors)
    assert _manifest(mem)["shards"][1]["sha256"] == _manifest(built)["shards"][1]["sha256"]


def test_old_manifest_without_checksums_loads_with_a_warning_and_is_rebuilt(mem, tiny_model, tiny_data):
    manifest = _manifest(mem)
    manifest["format_version"] = 1
    for shard in manifest["shards"]:
        del shard["sha256"], shard["bytes"]
    _write_manifest(mem, manifest)
    with pytest.warns(UserWarning, match="without shard checksums"):
        assert len(ItemMemory.load(mem)) == manifest["count"]
    logs = []
    build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), mem, DEFAULT_PROMPT,
                 shard_size=16, log=logs.append)
    assert any("without shard checksums: recomputing from shard 0" in line for line in logs)
    assert _manifest(mem)["format_version"] == 2 and all("sha256" in s for s in _manifest(mem)["shards"])


def test_concurrent_build_into_the_same_folder_is_refused(tmp_path, tiny_model, tiny_data):
    path = tmp_path / "m"
    first = _extractor(tiny_model)
    real = first.encode_ids
    seen = {}

    def meanwhile(seqs, desc=""):
        if not seen:  # while the first build runs: a second one, other settings, --overwrite
            with pytest.raises(MemoryBusyError, match=rf"{path} is being built by another process \(pid {os.getpid()}\)"):
                build_memory(_extractor(tiny_model, "mean"), tiny_data.train, len(tiny_data.catalog), path,
                             DEFAULT_PROMPT, shard_size=16, overwrite=True, **QUIET)
            with pytest.raises(MemoryBusyError, match="being built"):
                ItemMemory.load(path)
            seen["checked"] = True
        return real(seqs, desc)

    first.encode_ids = meanwhile
    memory = build_memory(first, tiny_data.train, len(tiny_data.catalog), path, DEFAULT_PROMPT, shard_size=16, **QUIET)
    assert seen and memory.manifest["pooling"] == "last"
    assert ItemMemory.load(path).manifest["pooling"] == "last"


def test_build_lock_is_held_across_processes(tmp_path, tiny_model, tiny_data):
    path = tmp_path / "m"
    code = ("import sys; from pyl2d.l2d.memory_lock import BuildLock\n"
            f"with BuildLock({str(path)!r}):\n    print('locked', flush=True); sys.stdin.read()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MemoryBusyError, match=rf"pid {holder.pid}\)"):
            build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), path, DEFAULT_PROMPT,
                         shard_size=16, **QUIET)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    build_memory(_extractor(tiny_model), tiny_data.train[:20], len(tiny_data.catalog), path, DEFAULT_PROMPT, **QUIET)
