#!/bin/sh
# Install torch into a virtual environment unless it already imports (called by the Makefile).
#
#   tools/install_torch.sh VENV_PYTHON
#
# TORCH_SPEC set (e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"): installed as given.
# No NVIDIA GPU (no nvidia-smi, no /proc/driver/nvidia): torch==$TORCH_VERSION from PyTorch's CPU
#   index first (about 190 MB on Linux x86_64), failing fast (no retry, short timeout) when that
#   index is unreachable or lacks the version, then from the default index (PyPI or the pip
#   configuration's), which on Linux is the CUDA build (a few GB with its nvidia-* wheels).
# NVIDIA GPU: torch==$TORCH_VERSION from the default index (on Linux, the CUDA build).
set -u
PY="$1"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TORCH_SPEC="${TORCH_SPEC:-}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
TORCH_INDEX_TIMEOUT="${TORCH_INDEX_TIMEOUT:-15}"
# Where to look for an NVIDIA driver (overridable for tests).
NVIDIA_SMI="${NVIDIA_SMI:-nvidia-smi}"
NVIDIA_PROC="${NVIDIA_PROC:-/proc/driver/nvidia}"

if "$PY" -c "import torch" 2>/dev/null; then
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
    exit 0
fi
if [ -n "$TORCH_SPEC" ]; then
    echo "installing $TORCH_SPEC (TORCH_SPEC)"
    # shellcheck disable=SC2086  # TORCH_SPEC may hold several pip arguments
    exec "$PY" -m pip install -q $TORCH_SPEC
fi
if command -v "$NVIDIA_SMI" >/dev/null 2>&1 || [ -e "$NVIDIA_PROC" ]; then
    echo "NVIDIA GPU found: installing torch==$TORCH_VERSION from the default index (CUDA build on Linux)"
    exec "$PY" -m pip install -q "torch==$TORCH_VERSION"
fi
echo "no NVIDIA GPU: installing torch==$TORCH_VERSION from PyTorch's CPU index ($TORCH_CPU_INDEX)"
if "$PY" -m pip install -q --retries 0 --timeout "$TORCH_INDEX_TIMEOUT" --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION"; then
    exit 0
fi
echo "the CPU index failed (unreachable, or no torch==$TORCH_VERSION for this platform):" \
     "installing torch==$TORCH_VERSION from the default index instead (on Linux the CUDA build, a few GB)" >&2
exec "$PY" -m pip install -q "torch==$TORCH_VERSION"
