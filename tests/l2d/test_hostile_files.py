"""Files a user may receive from someone else (docs/robustness.md): a FIFO, a device, an
oversized, repeated-key or wrongly typed copy of each file pyl2d reads is one clear error
naming the file, never a hang, an unbounded read or a raw traceback."""
import json
import os

import pytest

from pyl2d._io import read_bounded, read_json
from pyl2d.l2d.data.records import load_catalog, load_samples
from pyl2d.l2d.evaluation.calc_convention import read_results
from pyl2d.l2d.memory import MANIFEST, ItemMemory, MemoryFormatError
from pyl2d.l2d.model.hidden import _adapter_base
from pyl2d.l2d.model.train import TRAINING_INFO, read_record
from pyl2d.l2d.pipeline.runs import prompt_template


@pytest.fixture
def fifo(tmp_path):
    """A FIFO nobody writes to: opening it for reading the usual way blocks forever."""
    def make(path):
        os.mkfifo(path)
        return path
    return make


def test_the_readers_refuse_what_is_no_regular_file(tmp_path, fifo):
    with pytest.raises(ValueError, match="is a FIFO, not a regular file"):
        read_json(fifo(tmp_path / "f.json"), 100, "x")
    with pytest.raises(ValueError, match="is a character device"):
        read_bounded("/dev/zero", 100, "x")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="is a character device"):
        read_json(tmp_path / "zero.json", 100, "x")
    with pytest.raises(ValueError, match="is a folder"):
        read_json(tmp_path, 100, "x")


def test_read_json_is_strict_and_bounded(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"a": 1, "a": 2}')
    with pytest.raises(ValueError, match="'a' appears twice"):
        read_json(p, 100, "x")
    p.write_text('{"a": NaN}')
    with pytest.raises(ValueError, match="NaN is not JSON"):
        read_json(p, 100, "x")
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_json(p, 1 << 20, "x")
    p.write_text(json.dumps({"a": "x" * 200}))
    with pytest.raises(ValueError, match="over 100 bytes: too large to be a thing"):
        read_json(p, 100, "a thing")


# -- the memory manifest -------------------------------------------------------------------
@pytest.fixture
def memory(tmp_path, built_like):
    return built_like(tmp_path / "m", rows=40, dim=8, dtype="float32", shard_size=16)


def _edit_manifest(folder, **fields):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(fields)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_manifest_with_a_key_twice_is_a_format_error(memory):
    text = (memory / MANIFEST).read_text()
    (memory / MANIFEST).write_text(text.replace('"complete": true', '"complete": false, "complete": true'))
    with pytest.raises(MemoryFormatError, match="'complete' appears twice"):
        ItemMemory.load(memory)


def test_a_manifest_that_is_a_fifo_says_so(memory, fifo):
    (memory / MANIFEST).unlink()
    fifo(memory / MANIFEST)
    with pytest.raises(MemoryFormatError, match="is a FIFO"):  # it said 'missing manifest.json'
        ItemMemory.load(memory)


@pytest.mark.parametrize("field,value,message", [
    ("num_items", 10 ** 12, "'num_items' is 1000000000000, past any memory"),  # item_counts() asked for 8 TB
    ("hidden_size", 2 ** 30, "'hidden_size' is"),
    ("model_fingerprint", "f" * 20_000_000, "is not the short hex digest"),  # echoed whole (20 MB) before
    ("model_name", "n" * 10_000, "model_name is over"),
])
def test_manifest_sizes_and_names_are_bounded(memory, field, value, message):
    _edit_manifest(memory, **{field: value})
    with pytest.raises(MemoryFormatError, match=message) as info:
        ItemMemory.load(memory)
    assert len(str(info.value)) < 500


# -- pyl2d_training.json -----------------------------------------------------------------------
def test_a_training_record_that_is_no_regular_file_is_an_error_not_the_default_template(tmp_path, fifo):
    """A FIFO or dangling link named pyl2d_training.json made prompt_template return the
    default template without a word: a model trained otherwise was queried wrongly."""
    fifo(tmp_path / TRAINING_INFO)
    with pytest.raises(ValueError, match="is a FIFO"):
        prompt_template(tmp_path)
    assert read_record(tmp_path / TRAINING_INFO) is None  # 'trained with these settings?' is no: retrain
    os.unlink(tmp_path / TRAINING_INFO)
    (tmp_path / TRAINING_INFO).symlink_to(tmp_path / "gone")
    with pytest.raises(ValueError, match=TRAINING_INFO):
        prompt_template(tmp_path)


def test_a_training_record_with_a_repeated_key_or_of_the_wrong_kind_is_refused(tmp_path):
    (tmp_path / TRAINING_INFO).write_text('{"template": {}, "template": {"max_history": 3}}')
    with pytest.raises(ValueError, match="appears twice"):
        prompt_template(tmp_path)
    (tmp_path / TRAINING_INFO).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a pyl2d training record"):
        prompt_template(tmp_path)
    assert read_record(tmp_path / TRAINING_INFO) is None


# -- LoRA adapter folders ----------------------------------------------------------------------
@pytest.mark.parametrize("content,message", [
    ("[1]", "is a JSON list, not an object"),
    ('{"base_model_name_or_path": ["x"]}', "base_model_name_or_path must be a string"),
    ('{"base_model_name_or_path": 5}', "base_model_name_or_path must be a string"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_a_broken_adapter_config_is_one_clear_error(tmp_path, content, message):
    (tmp_path / "adapter_config.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        _adapter_base(str(tmp_path))


def test_an_adapters_long_base_name_is_not_echoed_whole(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "b" * 10_000_000}))
    with pytest.raises(FileNotFoundError) as info:
        _adapter_base(str(tmp_path))
    assert len(str(info.value)) < 1000


# -- pyl2d calc files and data files ---------------------------------------------------------
def test_calc_files_that_would_hang_or_never_end_are_refused(tmp_path, fifo):
    with pytest.raises(ValueError, match="is a FIFO"):
        read_results(fifo(tmp_path / "r.json"))
    (tmp_path / "z.json").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="is a character device"):
        read_results(tmp_path / "z.json")


def test_calc_records_with_a_key_twice_or_a_huge_integer_name_the_file(tmp_path):
    p = tmp_path / "r.json"
    p.write_text('[{"predict": ["a"], "predict": ["b"], "output": "a"}]')  # scored with the last, silently
    with pytest.raises(ValueError, match=r"r\.json: not a calc.py result file \(key 'predict' appears twice"):
        read_results(p)
    p.write_text('[{"predict": ["a"], "output": "a", "n": ' + "9" * 5000 + "}]")
    with pytest.raises(ValueError, match=r"r\.json: not a calc.py result file"):
        read_results(p)


def test_data_files_that_are_fifos_are_refused_not_waited_on(tmp_path, fifo):
    with pytest.raises(ValueError, match="items.txt is a FIFO"):
        load_catalog(fifo(tmp_path / "items.txt"))
    with pytest.raises(ValueError, match="test.csv is a FIFO"):
        load_samples(fifo(tmp_path / "test.csv"))


def test_a_symlinked_data_file_still_loads(tmp_path):
    """Regular files behind links are fine (MiniOneRec users link catalogs into info/)."""
    (tmp_path / "real.txt").write_text("Pen\t0\nInk\t1\n")
    (tmp_path / "items.txt").symlink_to(tmp_path / "real.txt")
    assert load_catalog(tmp_path / "items.txt").titles == ["Pen", "Ink"]


# -- prompt templates stored in a manifest or a training record (issue 23, items 1 and 2) ------
@pytest.mark.parametrize("field,value,message", [
    ("template", "{n:>50000000}{history}", "template"),  # rendered 50 MB per prompt; 11.7 GB in 120 s
    ("template", "{history.__class__.__mro__}{history}", "template"),  # attribute access rendered
    ("max_history", 2.5, "max_history"),  # a raw TypeError at the first prompt
    ("instruction", "x" * 5_000_000, "instruction"),  # into every prompt, unbounded
])
def test_a_stored_template_that_would_blow_up_or_break_is_refused_when_read(memory, tmp_path, field, value, message):
    manifest = json.loads((memory / MANIFEST).read_text())
    manifest["template"][field] = value
    (memory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(MemoryFormatError, match=message) as info:
        ItemMemory.load(memory)
    assert len(str(info.value)) < 1000
    (tmp_path / TRAINING_INFO).write_text(json.dumps({"template": manifest["template"]}))
    with pytest.raises(ValueError, match=message):
        prompt_template(tmp_path)
