"""tools/gpu_check.sh without a GPU: its CPU dry run (GPU_CHECK_DRY=1) runs every stage's
plumbing with tiny inputs (the build prints its command, the test stages collect, the
benchmark runs one small CPU size), in the order and under the limits of the script's PLAN,
and leaves the files the device tool brings back (at most 8, one folder, plain names).
A fake nvidia-smi stands for the GPU's compute capability. One dry run serves the module:
about 70 s on 2 busy cores (35 s on quiet ones), most of it Python starting six times."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "gpu_check.sh"
DEVICE_CALL_S = 480  # the budget for one device call, build included
PLAIN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
STAGE_LINE = re.compile(r"^stage (\S+) exit (\d+)(?: \(killed at the limit\))? after (\d+) s \(limit (\d+) s\)$")
SKIP_LINE = re.compile(r"^stage (\S+) skipped: (-?\d+) s left of (\d+) s$")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the script targets the Linux GPU machines")


def _plan():
    """[(stage, limit s, log file)], total s: what `gpu_check.sh --plan` says."""
    lines = subprocess.run(["bash", str(SCRIPT), "--plan"], capture_output=True, text=True, check=True,
                           timeout=30).stdout.strip().splitlines()
    assert lines[-1].startswith("total ")
    return [(f[0], int(f[1]), f[2]) for f in (line.split() for line in lines[:-1])], int(lines[-1].split()[1])


def _owed():
    text = (REPO / "docs" / "gpu_validation.md").read_text()
    block = re.search(r"^```owed-tests\n(.*?)^```$", text, re.S | re.M).group(1)
    return [line.split("#")[0].split()[0] for line in block.splitlines() if line.split("#")[0].strip()]


def _run(out, tmp, **env):
    fake = tmp / "bin"
    fake.mkdir(exist_ok=True)
    smi = fake / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in *noheader*) echo 9.0;; *) printf "name, compute_cap\\nFake, 9.0\\n";; esac\n')
    smi.chmod(0o755)
    full = dict(os.environ, GPU_CHECK_DRY="1", OUT=str(out), PYTHON=sys.executable,
                PATH=f"{fake}{os.pathsep}{os.environ.get('PATH', '')}", **env)
    full.pop("GPU_CHECK_ARCH", None)
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    out = tmp / "out"
    proc = _run(out, tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_the_stage_limits_fit_one_device_call():
    stages, total = _plan()
    assert [s for s, _, _ in stages] == ["machine", "build", "owed_tests", "gpu_tests", "bench_score_topk",
                                         "bench_other"]
    assert sum(limit for _, limit, _ in stages) <= total
    assert total + 5 < DEVICE_CALL_S  # 5: timeout's grace for the last stage
    assert all(PLAIN_NAME.match(f) for _, _, f in stages)


def test_the_dry_run_runs_every_stage_in_order_under_its_limit(dry_run):
    out, _ = dry_run
    stages, total = _plan()
    lines = (out / "summary.txt").read_text().splitlines()
    ran = [m.groups() for m in map(STAGE_LINE.match, lines) if m]
    assert [r[0] for r in ran] == [s for s, _, _ in stages]
    for (name, rc, took, limit), (_, planned, _) in zip(ran, stages):
        assert rc == "0", f"stage {name} exit {rc}"
        assert int(limit) == planned and int(took) <= planned
    assert lines[-1].startswith("done after") and f"(total limit {total} s)" in lines[-1]
    assert "Fake, 9.0" in lines[:4]  # the machine stage asked nvidia-smi


def test_the_dry_run_leaves_the_files_the_device_tool_returns(dry_run):
    out, _ = dry_run
    stages, _ = _plan()
    files = sorted(p.name for p in out.iterdir())
    assert all((out / f).is_file() and PLAIN_NAME.match(f) for f in files)
    assert set(files) == {f for _, _, f in stages} | {"bench_score_topk.md"}
    assert len(files) <= 8
    assert all((out / f).stat().st_size > 0 for f in files)


def test_the_build_targets_this_gpu_with_all_cores(dry_run):
    out, _ = dry_run
    log = (out / "build.log").read_text()
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    assert "-DCMAKE_CUDA_ARCHITECTURES=90-real" in log  # from the fake nvidia-smi's 9.0
    assert f"JOBS={cores} " in log and "TARGET=_C" in log and "PYL2D_CUDA=ON" in log


def test_the_owed_tests_come_first_and_each_selects_tests(dry_run):
    out, _ = dry_run
    owed = _owed()
    ids = [line for line in (out / "owed_tests.log").read_text().splitlines() if line.startswith("tests/")]
    for entry in owed:
        assert any(i == entry or i.startswith(entry + "::") or i.startswith(entry + "[") for i in ids), \
            f"owed entry {entry} selects no test (renamed?)"
    assert ids[0].startswith(owed[0])
    rest = [line for line in (out / "gpu_tests.log").read_text().splitlines() if line.startswith("tests/")]
    assert rest and not [i for i in rest if any(i.startswith(e) for e in owed)]
    assert "tests/ops/test_score_topk.py::test_gpu_matches_oracle" in "\n".join(rest)


def test_the_benchmark_stages_ran_their_plumbing(dry_run):
    out, _ = dry_run
    table = (out / "bench_score_topk.md").read_text()
    rows = [r for r in table.splitlines() if r.startswith("| 2x1000x32")]
    assert {(r.split("|")[2].strip(), r.split("|")[3].strip()) for r in rows} == {
        (d, m) for d in ("bfloat16", "float32") for m in ("ip", "l2")}
    assert (out / "bench_other.log").read_text().count("--help exit 0") == 4


def test_a_run_out_of_time_still_ends_in_time_with_its_summary(tmp_path):
    """GPU_CHECK_TOTAL_S=6: each stage gets at most the time left (one is killed at it, or
    skipped with under 5 s left), the run ends within the total plus timeout's grace, and
    summary.txt accounts for every stage in order."""
    proc = _run(tmp_path / "out", tmp_path, GPU_CHECK_TOTAL_S="6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    seen = []
    for line in lines:
        ran, skipped = STAGE_LINE.match(line), SKIP_LINE.match(line)
        if ran:
            seen.append(ran.group(1))
            assert int(ran.group(4)) <= 6
        elif skipped:
            seen.append(skipped.group(1))
            assert int(skipped.group(2)) < 5 and skipped.group(3) == "6"
    assert seen == [s for s, _, _ in _plan()[0]]
    assert SKIP_LINE.match(next(line for line in lines if "bench_other" in line))
    done = re.match(r"done after (\d+) s \(total limit 6 s\)", lines[-1])
    assert done and int(done.group(1)) <= 6 + 5
