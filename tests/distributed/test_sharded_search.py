"""pyl2d.distributed's sharded ops on 2 and 3 gloo processes: exactly the single-device
op's results (random and tie-heavy inputs, exclusion, k up to the catalog, uneven shards,
a rank with nothing), and mismatched arguments as one clear error on every rank."""
import pytest

import dist_cases
from dist_spawn import run_ranks

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("world", (2, 3))
def test_score_topk_equals_the_single_device_op(world):
    assert all(n > 0 for n in run_ranks(world, dist_cases.score_topk_cases))


@pytest.mark.parametrize("world", (2, 3))
def test_local_topk_equals_the_single_device_op(world):
    assert all(n > 0 for n in run_ranks(world, dist_cases.local_topk_cases))


def test_disagreeing_ranks_all_get_the_error():
    results = run_ranks(2, dist_cases.disagreement)
    for errors in results:
        assert len(errors) == 2
        assert "disagree on k" in errors[0] and "rank 0: 2, rank 1: 3" in errors[0]
        assert "rank 0" in errors[1] and "dimension 9" in errors[1]


def test_bad_input_on_one_rank_is_one_error_on_every_rank():
    for errors in run_ranks(2, dist_cases.one_rank_bad, timeout=120):
        assert len(errors) == 4, errors
        assert "differ in dimensions or dtype" in errors[0] and "differ in dimensions or dtype" in errors[1]
        assert "rank 0: ValueError: gather_rows needs a tensor" in errors[2]
        assert "rank 1: ValueError: local_item_ids" in errors[3], errors[3]


def test_gather_rows_with_uneven_counts():
    rows, counts = run_ranks(3, dist_cases.gather)[1]
    assert counts == [0, 1, 2] and rows == [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available() or __import__("torch").cuda.device_count() < 2,
                    reason="NCCL needs one GPU per rank: at least 2 GPUs")
def test_nccl_on_two_gpus_equals_the_one_gpu_op():
    assert all(n > 0 for n in run_ranks(2, dist_cases.nccl_cases, backend="nccl"))


@pytest.mark.parametrize("name,value,message", [("WORLD_SIZE", "x", "is not a number"), ("WORLD_SIZE", "0", ">= 1"),
                                                ("WORLD_SIZE", "-2", ">= 1"), ("RANK", "-4", ">= 0")])
def test_a_launcher_variable_out_of_range_is_named(monkeypatch, name, value, message):
    from pyl2d.distributed.launch import launched_rank, launched_world_size

    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}='{value}' .*{message}"):
        (launched_world_size if name == "WORLD_SIZE" else launched_rank)()


def test_an_id_on_two_ranks_or_a_non_int_k_is_one_clear_error_on_every_rank():
    results = run_ranks(2, dist_cases.shared_ids, timeout=120)
    assert results[0] == results[1]
    out = results[0]
    assert "local_ids: id 4 is held by ranks [0, 1]" in out[0], out[0]
    assert "local_ids: id 3 is held by ranks [0, 1]" in out[1], out[1]
    assert f"local_ids: id {1 << 31} is held by ranks [0, 1]" in out[2], out[2]
    assert "rank 1: ValueError: k must be an int, got 3.0 (float)" in out[3] and "-1" not in out[3], out[3]
    assert "rank 1: ValueError: k must be an int, got True (bool)" in out[4], out[4]
    assert "rank 1: ValueError: exclude must be a torch.Tensor" in out[5], out[5]
    assert "rank 1: ValueError: exclude must have 2 dimensions" in out[6], out[6]
    assert out[7] is True
    assert "local_item_ids: id 3 is held by ranks [0, 1]" in out[8], out[8]
    assert "rank 1: ValueError: m must be an int, got 1.0 (float)" in out[9], out[9]
