"""Every CPU kernel path this machine supports, not only its best one.

The cpu backend picks its SIMD variant (avx512, avx2, portable) and whether bf16 uses AMX
tiles once per process, so each path is checked in a subprocess of its own; CI also reruns
the whole op suite under each (``PYL2D_SIMD``, ``PYL2D_AMX=0``; see .ci/run)."""
import os
import subprocess
import sys
import textwrap

import pytest

import pyl2d
from pyl2d import _ext

lib = _ext.load()
pytestmark = pytest.mark.skipif(lib is None, reason="pyl2d._C was not built")


def _paths():
    """(env, expected variant, expected AMX) for every path this CPU can run."""
    if lib is None:
        return []
    out = []
    for variant in lib.cpu_simd_supported():
        out.append(({"PYL2D_SIMD": variant, "PYL2D_AMX": "0"}, variant, False))
    if lib.cpu_amx_supported():
        best = lib.cpu_simd_supported()[0]
        out.append(({"PYL2D_SIMD": best, "PYL2D_AMX": "1"}, best, True))
    return out


# Small shapes through each branch of the kernel: B=1 and B=3 (fp16/bf16 read in place),
# B=40 (converted tiles; AMX for bf16), D not a multiple of any vector width.
_SCRIPT = textwrap.dedent("""
    import sys, torch, pyl2d
    from pyl2d import _C
    sys.path.insert(0, {tests!r})
    from helpers import assert_topk_matches, oracle_scores, randn, REL_TOL
    assert _C.cpu_simd_variant() == {variant!r}, _C.cpu_simd_variant()
    assert _C.cpu_has_amx() == {amx!r}
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for b, n, d, k in ((1, 301, 75, 7), (3, 200, 33, 200), (40, 517, 130, 11)):
            q, x = randn(b, d, dtype=dtype, generator=g), randn(n, d, dtype=dtype, generator=g)
            for metric in ("ip", "cosine", "l2"):
                s, i = pyl2d.score_topk(q, x, k, metric, backend="cpu")
                assert_topk_matches(s, i, oracle_scores(q, x, metric), k, rel_tol=REL_TOL[dtype],
                                    msg=f"{{dtype}} {{metric}} B={{b}}")
        hidden = randn(4, 9, 70, dtype=dtype, generator=g)
        mask = torch.ones(4, 9, dtype=torch.long)
        got = pyl2d.pool_hidden(hidden, mask, mode="mean", normalize=True, backend="cpu")
        want = pyl2d.pool_hidden(hidden, mask, mode="mean", normalize=True, backend="torch")
        torch.testing.assert_close(got, want, rtol=REL_TOL[dtype] * 10, atol=1e-5)
    print("ok")
""")


def test_env_selects_the_path():
    """PYL2D_SIMD / PYL2D_AMX, where set, decide the path this process runs."""
    want = os.environ.get("PYL2D_SIMD")
    if want:
        supported = lib.cpu_simd_supported()  # an unsupported cap falls back as simd_dot.h says
        expected = {"portable": "portable", "avx2": "avx2" if "avx2" in supported else "portable"}.get(want, supported[0])
        assert lib.cpu_simd_variant() == expected
    if os.environ.get("PYL2D_AMX") == "0":
        assert not lib.cpu_has_amx()


@pytest.mark.parametrize("env,variant,amx", _paths(), ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items())
                         if isinstance(v, dict) else None)
def test_every_supported_path_matches_the_oracle(env, variant, amx, tmp_path):
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _SCRIPT.format(tests=tests, variant=variant, amx=amx)
    # The child imports the pyl2d this process tested (installed or source tree), not
    # whatever its working directory holds.
    here = os.path.dirname(os.path.dirname(os.path.abspath(pyl2d.__file__)))
    run_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    run_env.pop("PYL2D_BACKEND", None)
    proc = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
