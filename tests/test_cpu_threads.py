"""The cpu kernels' thread count (pyl2d/_cpu_threads.py): torch's count, capped at the cores
other processes leave free, or fixed by PYL2D_CPU_THREADS."""
import subprocess
import sys
import time

import pytest
import torch

from pyl2d import _cpu_threads


@pytest.fixture
def fresh(monkeypatch):
    """A meter with no window yet, torch at 2 threads, and PYL2D_CPU_THREADS unset."""
    before = torch.get_num_threads()
    monkeypatch.delenv(_cpu_threads.ENV, raising=False)
    monkeypatch.setattr(_cpu_threads, "_window", None)
    monkeypatch.setattr(_cpu_threads, "_free_cores", None)
    torch.set_num_threads(2)
    yield monkeypatch
    torch.set_num_threads(before)


def _fake_samples(monkeypatch, samples, cpus=2):
    """Replace the clock and counters with ``samples``: (wall, busy, own) seconds in turn."""
    it = iter(samples)
    state = {"now": 0.0}

    def sample(_cpus):
        wall, busy, own = next(it)
        state["now"] = wall
        return wall, busy, own
    monkeypatch.setattr(_cpu_threads, "_sample", sample)
    monkeypatch.setattr(_cpu_threads, "_allowed_cpus", lambda: set(range(cpus)))
    monkeypatch.setattr(_cpu_threads.time, "monotonic", lambda: state["now"] + 1.0)


def test_follows_torch_until_a_window_has_passed(fresh):
    _fake_samples(fresh, [(0.0, 0.0, 0.0)])
    assert _cpu_threads.cpu_threads() == 2


@pytest.mark.parametrize("others, want", [(0.0, 2), (0.3, 2), (0.7, 1), (1.0, 1), (2.0, 1)])
def test_capped_at_the_cores_others_leave_free(fresh, others, want):
    # one second: this process used 1.2 s of CPU, the allowed CPUs were busy 1.2 s + others
    _fake_samples(fresh, [(0.0, 10.0, 5.0), (1.0, 10.0 + 1.2 + others, 6.2)])
    _cpu_threads.cpu_threads()
    assert _cpu_threads.cpu_threads() == want


def test_never_above_torch(fresh):
    torch.set_num_threads(1)
    _fake_samples(fresh, [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)], cpus=8)
    assert _cpu_threads.cpu_threads() == 1


@pytest.mark.parametrize("value, want", [("1", 1), ("3", 3), (" auto ", 2), ("", 2)])
def test_env_fixes_the_count(fresh, value, want):
    _fake_samples(fresh, [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0)])
    fresh.setenv(_cpu_threads.ENV, value)
    assert _cpu_threads.cpu_threads() == want


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_env_is_a_clear_error(fresh, value):
    fresh.setenv(_cpu_threads.ENV, value)
    with pytest.raises(ValueError, match="PYL2D_CPU_THREADS"):
        _cpu_threads.cpu_threads()


def test_torch_threads_restores_the_count(fresh):
    with _cpu_threads.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with _cpu_threads.torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_spinning_process_takes_a_core(fresh):
    """The real counters: with one other process spinning, one core fewer than without."""
    cpus = len(_cpu_threads._allowed_cpus())
    torch.set_num_threads(cpus)

    def measured():
        fresh.setattr(_cpu_threads, "_window", None)
        _cpu_threads.free_cores()
        time.sleep(0.5)
        return _cpu_threads.free_cores()
    quiet = measured()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = measured()
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and quiet is not None
    assert busy <= max(1, quiet - 1) or quiet == 1
