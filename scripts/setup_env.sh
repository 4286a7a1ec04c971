#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment in .venv/ at the repo root.
# Idempotent: each step is skipped when its result is already there, so a warm run takes seconds.
# mmcv 2.1.0 is a source distribution only; it is built once (about 10 min on 2 cores) and pip
# caches the wheel, so later environments install it in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
STAMP=$VENV/.dinat_mm_env_v4

if [ -f "$STAMP" ] && "$PY" -c "import dinat_mm" 2>/dev/null; then
  exit 0
fi
start=$(date +%s)
[ -x "$PY" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
PIP="$PY -m pip --disable-pip-version-check"

# torch first: mmcv's build imports it. 2.13.0's CPU wheel lies on this machine's disk.
$PIP install -q "torch==2.13.0"
# mmcv's setup.py imports pkg_resources (setuptools < 81) and must see the installed torch.
$PIP install -q "setuptools<81" wheel ninja "numpy>=2" packaging
if ! "$PY" -c "import mmcv, mmcv.ops" 2>/dev/null; then
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} $PIP install -q --no-build-isolation "mmcv==2.1.0"
fi
$PIP install -q "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" ftfy regex \
  "pytest>=8" safetensors
# triton: na2d's GPU kernels; on this CPU-only machine the tests run them in Triton's interpreter and
# compile them ahead of time for sm_80/sm_90.
$PIP install -q "triton==3.9.0"
# tools/export.py: torch's ONNX exporter (onnxscript) and onnxruntime to check and run the graphs.
$PIP install -q "onnx==1.23.2" "onnxruntime==1.32.0" "onnxscript==0.7.2"
# natten is optional (dinat_mm delegates to it only on CUDA); installed so its detection is tested.
$PIP install -q "natten==0.21.*"
$PIP install -q --no-deps --no-build-isolation -e .
# na2d's C++ kernel is compiled for this CPU on first use (about 35 s); do it now, not in a demo.
"$PY" -c "from dinat_mm.ops import cpu_kernel as k; r = k.build(); print('na2d CPU kernel:', r or k.build_dir())"
touch "$STAMP"
echo "environment ready in $(( $(date +%s) - start )) s"
