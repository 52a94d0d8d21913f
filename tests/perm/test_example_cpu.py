"""pyl2d/perm/grpo_example.py (shipped in the wheel: python -m pyl2d.perm.grpo_example) runs on a CPU machine as documented: a tiny saved policy, a loopback
judge server, --cpu --precision fp32 and tiny lengths, one GRPO step."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "pyl2d" / "perm" / "grpo_example.py"


@pytest.mark.slow
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_example_runs_one_step_on_cpu(tmp_path, judge_server, use_async):
    import trl
    from packaging.version import Version

    from tests.perm._tiny_lm import tiny_lm

    if use_async and Version(trl.__version__) < Version("0.27"):
        pytest.skip(f"TRL {trl.__version__} does not await reward functions (0.27 does); the example says so")

    model, tokenizer = tiny_lm()
    model.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    data = tmp_path / "dialogues.jsonl"
    data.write_text("".join(json.dumps({"persona": "a nurse", "scenario": f"night shift {i}", "query": "I am tired"})
                            + "\n" for i in range(2)))
    cmd = [sys.executable, str(EXAMPLE), "--policy", str(tmp_path / "policy"), "--data", str(data),
           "--judge-url", judge_server.base_url, "--judge-model", "judge", "--api-key-env", "PYL2D_TEST_NO_KEY",
           "--output-dir", str(tmp_path / "run"), "--num-generations", "2", "--max-steps", "1",
           "--max-completion-length", "8", "--cpu", "--precision", "fp32"] + (["--async"] if use_async else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "invalid judge scores per perspective" in run.stdout
    assert judge_server.total_requests() >= 4 + 2 * 4  # the check call, then 2 completions x 4 perspectives
