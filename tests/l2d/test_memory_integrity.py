"""A memory's files are checked, not trusted: corrupted, inconsistent or escaping shards and
malformed manifests are one MemoryFormatError naming the file; a build locks its folder."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from pyl2d.l2d.data.prompts import DEFAULT_PROMPT
from pyl2d.l2d.memory import MANIFEST, ItemMemory, MemoryBusyError, MemoryFormatError, build_memory
from pyl2d.l2d.model.hidden import HiddenStateExtractor

QUIET = dict(log=lambda *_: None)
pytestmark = pytest.mark.filterwarnings("ignore:.*one file per shard:UserWarning")  # format-2 copies, on purpose


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


@pytest.fixture
def old(mem):
    """The same memory rewritten in format 2 (one safetensors file per shard, as pyl2d wrote
    before format 3), which loading still accepts."""
    import hashlib

    from safetensors.torch import save

    manifest = _manifest(mem)
    loaded = ItemMemory.load(mem)
    shards = []
    for entry in manifest["shards"]:
        begin = entry["index"] * manifest["shard_size"]
        data = save({"vectors": loaded.vectors[begin:begin + entry["count"]].contiguous(),
                     "item_ids": loaded.item_ids[begin:begin + entry["count"]].contiguous()})
        name = f"shard-{entry['index']:05d}.safetensors"
        (mem / name).write_bytes(data)
        shards.append({"file": name, "count": entry["count"], "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()})
    del loaded
    (mem / "memory.safetensors").unlink()
    manifest = {k: v for k, v in manifest.items() if k not in ("file", "total")}
    _write_manifest(mem, {**manifest, "format_version": 2, "shards": shards})
    return mem


def _manifest(mem):
    return json.loads((mem / MANIFEST).read_text())


def _write_manifest(mem, manifest):
    (mem / MANIFEST).write_text(json.dumps(manifest))


def _rehash(mem, manifest, index):
    """Make the manifest entry match the (rewritten) file, as a careless tool would."""
    import hashlib

    data = (mem / manifest["shards"][index]["file"]).read_bytes()
    manifest["shards"][index].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def _flip(file, offset):
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x40
    file.write_bytes(bytes(data))


def test_manifest_records_checksums_and_a_lock_file(built):
    manifest = _manifest(built)
    assert manifest["format_version"] == 3 and manifest["file"] == "memory.safetensors"
    assert [s["index"] for s in manifest["shards"]] == list(range(manifest["n_shards"]))
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert (built / ".build.lock").is_file()


def test_flipped_byte_in_the_data_file_names_the_shard(mem):
    manifest = _manifest(mem)
    _flip(mem / "memory.safetensors", -3)  # the last row: the last shard
    last = manifest["n_shards"] - 1
    with pytest.raises(MemoryFormatError, match=rf"memory\.safetensors is corrupted in shard {last} \(entries "):
        ItemMemory.load(mem)
    assert len(ItemMemory.load(mem, verify=False)) == manifest["count"]  # verify=False skips hashing


def test_truncated_data_file_is_a_format_error(mem):
    file = mem / "memory.safetensors"
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(MemoryFormatError, match=r"memory\.safetensors is 1000 bytes but the manifest"):
        ItemMemory.load(mem, verify=False)


def test_data_file_with_another_header_is_rejected(mem):
    file = mem / "memory.safetensors"
    data = bytearray(file.read_bytes())
    at = data.index(b'"F32"')
    data[at:at + 5] = b'"I32"'
    file.write_bytes(bytes(data))
    with pytest.raises(MemoryFormatError, match="header does not match the manifest"):
        ItemMemory.load(mem, verify=False)


@pytest.mark.parametrize("edit,message", [
    (lambda m: {**m, "shards": m["shards"][::-1]}, r"shards\[0\]: index is"),
    (lambda m: {**m, "shards": [{**m["shards"][0], "count": 3}] + m["shards"][1:]}, r"shards\[0\]: count is 3"),
    (lambda m: {**m, "total": m["total"] + 100}, "n_shards is"),
    (lambda m: {**m, "file": "../memory.safetensors"}, "plain file name inside the memory folder"),
    (lambda m: {**m, "shards": m["shards"][:-1], "count": m["count"] - m["shards"][-1]["count"]}, "says complete"),
])
def test_format_3_manifest_of_the_wrong_shape(mem, edit, message):
    _write_manifest(mem, edit(_manifest(mem)))
    with pytest.raises(MemoryFormatError, match=message):
        ItemMemory.load(mem)


def test_symlinked_data_file_cannot_escape(mem):
    outside = mem.parent / "elsewhere.safetensors"
    shutil.move(mem / "memory.safetensors", outside)
    (mem / "memory.safetensors").symlink_to(outside)
    with pytest.raises(MemoryFormatError, match="outside the memory folder"):
        ItemMemory.load(mem)


def test_format_2_memory_still_loads(old, built):
    with pytest.warns(UserWarning, match="copies every shard into RAM"):
        loaded = ItemMemory.load(old)
    want = ItemMemory.load(built)
    assert torch.equal(loaded.vectors, want.vectors) and torch.equal(loaded.item_ids, want.item_ids)


def test_format_2_shard_listed_twice_is_rejected(old):
    mem = old
    manifest = _manifest(mem)
    manifest["shards"].append(dict(manifest["shards"][0]))
    manifest["n_shards"] += 1
    manifest["count"] += manifest["shards"][0]["count"]
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match=r"shard-00000\.safetensors.* listed twice"):
        ItemMemory.load(mem)


def test_format_2_int32_shard_is_not_promoted(old):
    mem = old
    from safetensors.torch import load_file, save_file

    manifest = _manifest(mem)
    file = mem / manifest["shards"][1]["file"]
    tensors = load_file(str(file))
    save_file({"vectors": tensors["vectors"], "item_ids": tensors["item_ids"].to(torch.int32)}, str(file))
    _rehash(mem, manifest, 1)
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match=r"shard-00001\.safetensors: item_ids is int32"):
        ItemMemory.load(mem)


def test_format_2_flipped_byte_is_detected(old):
    mem = old
    file = mem / "shard-00001.safetensors"
    data = bytearray(file.read_bytes())
    data[-3] ^= 0x40
    file.write_bytes(bytes(data))
    with pytest.raises(MemoryFormatError, match=r"shard-00001\.safetensors is corrupted"):
        ItemMemory.load(mem)
    assert len(ItemMemory.load(mem, verify=False)) == _manifest(mem)["count"]  # verify=False skips hashing


def test_format_2_truncated_shard_is_a_format_error(old):
    mem = old
    file = mem / "shard-00000.safetensors"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(MemoryFormatError, match=r"shard-00000\.safetensors is 100 bytes"):
        ItemMemory.load(mem)
    with pytest.raises(MemoryFormatError, match=r"shard-00000\.safetensors is not a readable safetensors"):
        ItemMemory.load(mem, verify=False)


def test_format_2_shard_with_the_wrong_shape_is_rejected(old):
    mem = old
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
def test_format_2_manifest_of_the_wrong_shape_is_one_clear_error(old, edit, message):
    mem = old
    _write_manifest(mem, edit(_manifest(mem)))
    with pytest.raises(MemoryFormatError, match=message) as info:
        ItemMemory.load(mem)
    assert str(mem / MANIFEST) in str(info.value)


@pytest.mark.parametrize("content", [b"{\"format_version\": 2, \xff", b"[" * 100_000 + b"]" * 100_000,
                                     b"{\"format_version\": " + b"9" * 5000 + b"}"])  # past int()'s digit limit
def test_manifest_that_is_not_json(mem, content):
    (mem / MANIFEST).write_bytes(content)
    with pytest.raises(MemoryFormatError, match="not valid JSON"):
        ItemMemory.load(mem)


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "sub/shard.safetensors", ".."])
def test_format_2_shard_paths_cannot_leave_the_folder(old, name):
    mem = old
    (mem.parent / "outside.safetensors").write_bytes((mem / "shard-00000.safetensors").read_bytes())
    manifest = _manifest(mem)
    manifest["shards"][0]["file"] = name
    _write_manifest(mem, manifest)
    with pytest.raises(MemoryFormatError, match="plain file name inside the memory folder"):
        ItemMemory.load(mem)


def test_format_2_symlinked_shard_cannot_escape(old):
    mem = old
    outside = mem.parent / "elsewhere.safetensors"
    shutil.move(mem / "shard-00000.safetensors", outside)
    (mem / "shard-00000.safetensors").symlink_to(outside)
    with pytest.raises(MemoryFormatError, match="outside the memory folder"):
        ItemMemory.load(mem)


def test_resumed_build_rechecks_the_shards_it_keeps(mem, tiny_model, tiny_data, built):
    ex = _extractor(tiny_model)
    calls = []
    real = ex.encode_ids
    ex.encode_ids = lambda seqs, desc="": calls.append(desc) or real(seqs, desc)
    _flip(mem / "memory.safetensors", -3)  # the last shard
    logs = []
    resumed = build_memory(ex, tiny_data.train, len(tiny_data.catalog), mem, DEFAULT_PROMPT, shard_size=16,
                           log=logs.append)
    last = _manifest(mem)["n_shards"] - 1
    assert any(f"shard {last} does not match its recorded sha256: recomputing it" in line for line in logs)
    assert calls == [f"memory shard {last + 1}/{last + 1}"]  # only that shard was encoded again
    want = ItemMemory.load(built)
    torch.testing.assert_close(resumed.vectors, want.vectors)
    assert _manifest(mem)["shards"] == _manifest(built)["shards"]


def test_old_manifest_without_checksums_loads_with_a_warning_and_is_rebuilt(old, tiny_model, tiny_data):
    mem = old
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
    assert any("in format 1: rebuilding it in format 3" in line for line in logs)
    assert _manifest(mem)["format_version"] == 3
    assert not any(p.name.startswith("shard-") for p in mem.iterdir())  # the old shard files are gone


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
    code = ("import sys; from pyl2d.l2d.memory.lock import BuildLock\n"
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


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_lock_file_that_is_no_regular_file_is_an_error_not_a_hang(mem, tiny_model, tiny_data, tmp_path, kind):
    (mem / ".build.lock").unlink()
    if kind == "fifo":
        os.mkfifo(mem / ".build.lock")  # opening it for reading would wait for a writer forever
    else:
        (tmp_path / "elsewhere").write_text("keep")
        (mem / ".build.lock").symlink_to(tmp_path / "elsewhere")  # the build truncates its lock file
    if kind == "fifo":
        with pytest.raises(ValueError, match="not a regular file"):
            ItemMemory.load(mem)
    with pytest.raises(ValueError, match="not a regular file" if kind == "fifo" else "is a symlink"):
        build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), mem, DEFAULT_PROMPT,
                     shard_size=16, **QUIET)
    if kind == "symlink":
        assert (tmp_path / "elsewhere").read_text() == "keep"


def test_a_progress_line_nested_too_deep_is_skipped_as_torn(mem, tiny_model, tiny_data, built):
    manifest = _manifest(mem)
    first = manifest["shards"][:1]
    _write_manifest(mem, {**manifest, "complete": False, "shards": first, "count": first[0]["count"]})
    (mem / "progress-00000.jsonl").write_text("[" * 1500 + "]" * 1500 + "\n")  # under the size bound
    logs = []
    build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), mem, DEFAULT_PROMPT,
                 shard_size=16, log=logs.append)
    assert any("not a progress entry" in line for line in logs)
    assert _manifest(mem)["shards"] == _manifest(built)["shards"]


def test_a_resume_names_the_model_any_way(mem, tiny_model, tiny_data):
    """The same model spelt ./model or /abs/model is the same model (its fingerprint says so)."""
    manifest = _manifest(mem)
    _write_manifest(mem, {**manifest, "model_name": "./elsewhere/spelt/differently"})
    build_memory(_extractor(tiny_model), tiny_data.train, len(tiny_data.catalog), mem, DEFAULT_PROMPT,
                 shard_size=16, model_name="model/", **QUIET)


_SEARCH_AFTER_ANOTHER_WRITER = r"""
import os, pathlib, sys
from pyl2d.l2d.data.synthetic import make_synthetic
from pyl2d.l2d.decode import L2DRecommender, Representation
from pyl2d.l2d.memory import ItemMemory, MemoryFormatError
from pyl2d.l2d.model.hidden import load_model

model_dir, folder, how = sys.argv[1:]
catalog = make_synthetic(n_items=40, n_users=40, min_len=4, max_len=7, seed=3).catalog  # tiny_data's
model, tok = load_model(model_dir, device="cpu")
# The raw representation: the recommender searches the mapped file's pages themselves.
rec = L2DRecommender(model, tok, ItemMemory.load(folder), catalog, aggregation="local", m=5,
                     representation=Representation())
rec.recommend([[1, 2]], k=3)
file = pathlib.Path(folder, "memory.safetensors")
if how == "truncate":  # what `cp smaller-memory memory.safetensors` does to the mapped file
    os.truncate(file, file.stat().st_size // 3)
else:  # bytes rewritten in place, size kept
    with open(file, "r+b") as f:
        f.seek(-64, os.SEEK_END)
        f.write(bytes(64))
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock still moves on
try:
    rec.recommend([[1, 2]], k=3)
except MemoryFormatError as exc:
    print(exc)
    sys.exit(3)
print("searched the changed file")
"""


@pytest.mark.parametrize("how", ["truncate", "rewrite"])
def test_a_mapped_file_changed_by_another_writer_is_an_error_not_sigbus(mem, tiny_model_dir, how):
    """Truncated under a loaded memory, the next search read past the end of the mapping and the
    process died of SIGBUS (exit 135); bytes rewritten in place were searched silently. Now the
    recommender checks the file before each search. (A subprocess: a regression must not kill
    the test run.)"""
    done = subprocess.run([sys.executable, "-c", _SEARCH_AFTER_ANOTHER_WRITER, str(tiny_model_dir), str(mem), how],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr[-2000:])
    want = "truncated or replaced" if how == "truncate" else "rewritten in place"
    assert want in done.stdout and "load the memory again" in done.stdout
