"""L2D on several processes (gloo, spawned here): a data-parallel memory build equals the
one-process build, a killed distributed build resumes under another world size with
nothing encoded twice, and the sharded recommender returns exactly the one-process
recommendations on amazon-office."""
import json

import pytest
import torch

import dist_cases
from dist_spawn import run_ranks
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT
from pyl2d.l2d.memory import MANIFEST, ItemMemory, build_memory

pytestmark = pytest.mark.distributed
SHARD = 8


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir):
    """The one-process build of the tiny memory, and its shard count."""
    path = tmp_path_factory.mktemp("single") / "m"
    model, tok, data, ex = dist_cases._tiny(tiny_model_dir)
    memory = build_memory(ex, data.train, len(data.catalog), path, DEFAULT_PROMPT, shard_size=SHARD,
                          log=lambda *_: None)
    return memory, memory.manifest["n_shards"]


@pytest.mark.parametrize("world", (2, 3))
def test_distributed_build_equals_the_single_process_build(tmp_path, tiny_model_dir, single, world):
    want, n_shards = single
    results = run_ranks(world, dist_cases.build, tiny_model_dir, tmp_path / "m", SHARD)
    assert sorted(d for calls, _, _ in results for d in calls) == sorted(
        f"memory shard {i + 1}/{n_shards}" for i in range(n_shards))  # every shard once, on some rank
    for _, vectors, ids in results:
        torch.testing.assert_close(vectors, want.vectors, rtol=1e-5, atol=1e-6)
        assert torch.equal(ids, want.item_ids)
    manifest = json.loads((tmp_path / "m" / MANIFEST).read_text())
    assert manifest["complete"] and [s["count"] for s in manifest["shards"]] == [
        s["count"] for s in want.manifest["shards"]]
    assert not list((tmp_path / "m").glob("progress-*"))


def test_killed_distributed_build_resumes_with_another_world_size(tmp_path, tiny_model_dir, single):
    want, n_shards = single
    codes = run_ranks(2, dist_cases.build, tiny_model_dir, tmp_path / "m", SHARD, (1, 2), allow_failure=True)
    assert codes[1] == 17  # rank 1 was killed in its second shard; rank 0 was stopped with it
    logged = [json.loads(line)["index"] for f in (tmp_path / "m").glob("progress-*.jsonl")
              for line in f.read_text().splitlines() if line.strip()]
    assert 1 <= len(logged) < n_shards and len(set(logged)) == len(logged)
    with pytest.raises(ValueError, match="incomplete"):
        ItemMemory.load(tmp_path / "m")
    results = run_ranks(3, dist_cases.build, tiny_model_dir, tmp_path / "m", SHARD)
    encoded = [d for calls, _, _ in results for d in calls]
    assert len(encoded) == n_shards - len(logged)  # nothing recorded was encoded again
    assert not {f"memory shard {i + 1}/{n_shards}" for i in logged} & set(encoded)
    for _, vectors, ids in results:
        torch.testing.assert_close(vectors, want.vectors, rtol=1e-5, atol=1e-6)
        assert torch.equal(ids, want.item_ids)


def _options():
    from pyl2d.l2d import Representation

    return {"global raw l2": dict(representation=Representation()),
            "local raw l2 m=50": dict(aggregation="local", m=50, representation=Representation()),
            "global default": dict(),
            "local default ip m=100": dict(aggregation="local", m=100, metric="ip")}


@pytest.fixture(scope="module")
def office_memory(tmp_path_factory, tiny_model_dir, real_data):
    from pyl2d.l2d.data.folders import load_folder
    from pyl2d.l2d.model.hidden import HiddenStateExtractor, load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    data = load_folder(real_data / "amazon-office")
    path = tmp_path_factory.mktemp("office") / "m"
    build_memory(HiddenStateExtractor(model, tok, batch_size=64, progress=False), data.train, len(data.catalog), path,
                 DEFAULT_PROMPT, shard_size=1024, log=lambda *_: None)
    return path


@pytest.mark.filterwarnings("ignore:.*never occur as a training target", "ignore:a prompt has")
@pytest.mark.parametrize("world", (2, 3))
def test_sharded_recommender_equals_the_single_process_one_on_amazon_office(tiny_model_dir, real_data, office_memory,
                                                                            world):
    """The ranks' recommendations, concatenated, are the one-process recommender's for the
    same query vectors (the ranks' own encodings), bit for bit, ties and exclusions included;
    the representation rank 0 fitted is the one-process fit."""
    from pyl2d.l2d.data.folders import load_folder
    from pyl2d.l2d.model.hidden import load_model
    from pyl2d.l2d.decode.recommender import L2DRecommender, pad_ids

    n_queries = 64
    options = _options()
    results = run_ranks(world, dist_cases.sharded_recommend, tiny_model_dir, office_memory, real_data / "amazon-office",
                        n_queries, options, timeout=900)
    model, tok = load_model(str(tiny_model_dir), device="cpu")
    data = load_folder(real_data / "amazon-office")
    memory = ItemMemory.load(office_memory)
    exclude = pad_ids([s.history_ids for s in data.test[:n_queries]])
    for name, kwargs in options.items():
        parts = [part[name] for part in results]
        single = L2DRecommender(model, tok, memory, data.catalog, progress=False, **kwargs)
        fitted = parts[0][2]
        for a, b in ((fitted.mean, single.transform.mean), (fitted.matrix, single.transform.matrix)):
            if b is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        single = L2DRecommender(model, tok, memory, data.catalog, progress=False, transform=fitted, **kwargs)
        vectors = torch.cat([p[1] for p in parts if p[1] is not None])
        want = single.rank(vectors, 20, exclude)[1].tolist()
        got = [row for p in parts for row in p[0]]
        assert got == want, name


def test_sharded_recommender_bad_input_on_one_rank_and_no_queries_anywhere(tiny_model_dir):
    for rank_out in run_ranks(2, dist_cases.sharded_bad_input, tiny_model_dir, timeout=300):
        assert "rank 1: ValueError: m must be a positive int" in rank_out[0]
        assert rank_out[1] == "no error" and "rank 1: ValueError: k=0 is out of range" in rank_out[2]
        assert rank_out[3] == (0, 3)
        assert rank_out[4][0][0] in (0, 2, 4) and 39 not in rank_out[4][0]


def test_torchrun_build_memory_equals_the_single_process_build(tmp_path, tiny_model_dir, tiny_data):
    """The CLI under torchrun (2 CPU processes, gloo) writes the memory a one-process
    `pyl2d build-memory` writes: same rows, same vectors, same manifest entries."""
    import os
    import subprocess
    import sys

    from pyl2d.l2d.data.folders import write_folder

    folder = write_folder(tiny_data, tmp_path / "data")
    args = ["build-memory", "--data", str(folder), "--model", str(tiny_model_dir), "--shard-size", "8", "--quiet",
            "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "pyl2d", *args, "--output", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "pyl2d", *args, "--output", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "data-parallel memory build on 2 ranks" in run.stdout + run.stderr
    a, b = ItemMemory.load(tmp_path / "one"), ItemMemory.load(tmp_path / "two")
    torch.testing.assert_close(b.vectors, a.vectors, rtol=1e-5, atol=1e-6)
    assert torch.equal(a.item_ids, b.item_ids)
    assert [s["count"] for s in a.manifest["shards"]] == [s["count"] for s in b.manifest["shards"]]
