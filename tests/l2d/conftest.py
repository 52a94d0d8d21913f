"""Fixtures for the L2D tests: a small synthetic data set and a tiny Llama trained on it for
a few seconds (tokenizer trained in the test, nothing downloaded)."""
import pytest
import torch

from pyl2d.l2d.data.synthetic import make_synthetic
from pyl2d.l2d.model.train import TrainConfig, train_model

TINY = dict(vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
            epochs=1.0, batch_size=16, warmup_steps=5)


@pytest.fixture(scope="session")
def tiny_data():
    return make_synthetic(n_items=40, n_users=40, min_len=4, max_len=7, seed=3)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_data):
    out = tmp_path_factory.mktemp("tiny_model")
    train_model(tiny_data.catalog, tiny_data.train, out, TrainConfig(**TINY), progress=False, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from pyl2d.l2d.model.hidden import load_model

    torch.manual_seed(0)
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture
def built_like():
    from helpers import write_synthetic_memory

    return write_synthetic_memory
