"""pyl2d/_codes.py is the one definition of the codes shared with the native code; the
compiled mirror (csrc/codes.h, csrc/tensor_arg.h) must agree with it name for name."""
import numpy as np
import pytest

from pyl2d import _codes, _ext

lib = _ext.load()


@pytest.mark.skipif(lib is None, reason="pyl2d._C was not built")
@pytest.mark.parametrize("table", sorted(_codes.TABLES))
def test_compiled_codes_match_the_python_tables(table):
    compiled = lib.codes()
    want = {name: code for code, name in enumerate(_codes.TABLES[table])}
    assert compiled[table] == want, f"csrc/codes.h and pyl2d/_codes.py disagree on {table}"
    assert compiled["counts"][table] == len(want), f"csrc/codes.h: the {table} count is stale"


@pytest.mark.skipif(lib is None, reason="pyl2d._C was not built")
def test_compiled_norm_eps_matches():
    assert lib.codes()["norm_eps"] == float(np.float32(_codes.NORM_EPS))


def test_code_dicts_follow_the_tables():
    assert _codes.METRIC_CODES == {n: _codes.code(_codes.METRICS, n) for n in _codes.METRICS}
    assert list(_codes.POOL_MODE_CODES) == list(_codes.POOL_MODES)
    assert list(_codes.REWARD_MODE_CODES) == list(_codes.REWARD_MODES)
    assert list(_codes.ADVANTAGE_SCALE_CODES) == list(_codes.ADVANTAGE_SCALES)
    assert [str(d).replace("torch.", "") for d in _ext.DTYPE_CODES] == list(_codes.DTYPES)
