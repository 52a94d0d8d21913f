#!/usr/bin/env bash
# Release wheels with cibuildwheel (run on a Linux x86_64 host with Docker or Podman):
#   tools/release_wheels.sh cpu    -> wheelhouse/pyl2d_kernels-<v>-cp3{10..13}-...-manylinux_2_28_x86_64.whl
#   tools/release_wheels.sh cuda   -> wheelhouse-cu13/pyl2d_kernels-<v>+cu13-cp3{10..13}-...whl
# CPU wheels go to PyPI. CUDA wheels carry the local version +cu13 (pyproject.toml), which PyPI
# refuses: publish them on an index of their own (pip install pyl2d-kernels --extra-index-url
# <that index>), as PyTorch does. The CUDA runtime is linked statically; the driver is the
# user's. The configuration lives in pyproject.toml's [tool.cibuildwheel].
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q "cibuildwheel>=2.21"
case "${1:-cpu}" in
  cpu)
    cibuildwheel --platform linux --output-dir wheelhouse ;;
  cuda)
    # The CUDA 13 compiler from NVIDIA's RHEL 8 repository inside the manylinux_2_28 image.
    CIBW_BEFORE_ALL_LINUX="dnf install -y dnf-plugins-core && dnf config-manager --add-repo \
https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo && \
dnf install -y cuda-nvcc-13-0 cuda-cudart-devel-13-0" \
    CIBW_ENVIRONMENT_LINUX="PYL2D_CUDA=ON CUDACXX=/usr/local/cuda-13.0/bin/nvcc PATH=/usr/local/cuda-13.0/bin:\$PATH" \
    CIBW_TEST_COMMAND="python {project}/tools/wheel_smoke.py" \
    cibuildwheel --platform linux --output-dir wheelhouse-cu13 ;;
  *)
    echo "usage: $0 cpu|cuda" >&2; exit 2 ;;
esac
