"""What this process can run on: whether Triton is installed and whether it is interpreted
(``TRITON_INTERPRET=1``, Triton kernels on CPU tensors). Backends read these facts here, so
they never import the dispatcher (pyl2d/_backend.py)."""
from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
