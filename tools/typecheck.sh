#!/usr/bin/env bash
# The public API under mypy --strict: pyl2d/__init__.py and the method packages' __init__
# files, and tests/typing/public_api.py (a user's calls of every top-level export). The
# modules behind the exports are read for their signatures (--follow-imports=silent) but
# not themselves held to strict mode.   Usage: tools/typecheck.sh   (MYPY=path/to/mypy)
set -euo pipefail
cd "$(dirname "$0")/.."
"${MYPY:-mypy}" --strict --follow-imports=silent --no-error-summary --cache-dir "${MYPY_CACHE:-${TMPDIR:-/tmp}/pyl2d-mypy}" \
  pyl2d/__init__.py pyl2d/l2d/__init__.py pyl2d/perm/__init__.py tests/typing/public_api.py
echo "mypy --strict: the public API type-checks"
