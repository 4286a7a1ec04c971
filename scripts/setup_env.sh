#!/usr/bin/env bash
# Creates (or completes) the project's virtual environment in .venv/ at the repo root.
# Idempotent: each step is skipped when its result is already there, so a warm run takes seconds.
# mmcv 2.1.0 is a source distribution only: it is built once for the installed torch (about 10 min
# on 2 cores) and the wheel kept in $DINAT_MM_WHEELS/torch-<version>/, so later environments with
# the same torch install it in seconds. pip's own wheel cache is never used for it: it does not
# know which torch a wheel was built against.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=$VENV/bin/python
STAMP=$VENV/.dinat_mm_env_v9
TORCH=2.14.1
TORCHVISION=0.29.1
TRITON=3.8.0  # the Triton that torch 2.14.1 requires
MMCV=2.1.0
WHEELS=${DINAT_MM_WHEELS:-$HOME/.cache/dinat_mm/wheels}/torch-$TORCH

if [ -f "$STAMP" ] && "$PY" -c "import dinat_mm" 2>/dev/null; then
  exit 0
fi
start=$(date +%s)
[ -x "$PY" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
PIP="$PY -m pip --disable-pip-version-check"

# torch first: mmcv's build imports it. torch 2.14.1 and torchvision 0.29.1 are the default (CUDA 13)
# builds, which run on CPU too; this machine's disk holds them.
$PIP install -q "torch==$TORCH" "torchvision==$TORCHVISION" "triton==$TRITON"
# mmcv's setup.py imports pkg_resources (setuptools < 81) and must see the installed torch.
$PIP install -q "setuptools<81" wheel ninja "numpy>=2" packaging "mmengine==0.10.7"
MARK=$VENV/.mmcv_built_for_torch
if [ "$(cat "$MARK" 2>/dev/null)" != "$TORCH" ] || ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
  wheel=$(ls "$WHEELS"/mmcv-$MMCV-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    build=$(mktemp -d)
    $PIP download -q --no-deps --no-binary :all: --no-cache-dir "mmcv==$MMCV" -d "$build"
    tar xzf "$build/mmcv-$MMCV.tar.gz" -C "$build"
    # torch >= 2.14's headers need C++20; mmcv 2.1.0's setup.py asks for C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV/setup.py"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} $PIP wheel -q --no-deps --no-build-isolation --no-cache-dir \
      -w "$build/out" "$build/mmcv-$MMCV"
    mkdir -p "$WHEELS"
    built=$(ls "$build"/out/mmcv-$MMCV-*.whl)
    cp "$built" "$WHEELS/.partial.whl" && mv "$WHEELS/.partial.whl" "$WHEELS/$(basename "$built")"
    rm -rf "$build"
    wheel=$WHEELS/$(basename "$built")
  fi
  $PIP uninstall -q -y mmcv 2>/dev/null || true
  $PIP install -q --no-cache-dir "$wheel"
  "$PY" -c "import mmcv.ops"
  echo "$TORCH" > "$MARK"
fi
$PIP install -q "mmdet==3.3.0" "mmsegmentation==1.2.2" "mmpretrain==1.2.0" ftfy regex \
  "pytest>=8" "pytest-xdist==3.8.0" safetensors
# tools/export.py: torch's ONNX exporter (onnxscript) and onnxruntime to check and run the graphs.
$PIP install -q "onnx==1.23.2" "onnxruntime==1.32.0" "onnxscript==0.7.2"
# natten is optional (dinat_mm delegates to it only on CUDA); installed so its detection is tested.
$PIP install -q "natten==0.21.*"
# dinat_mm.hf runs transformers' DiNAT on dinat_mm's operator; the tested transformers (docs/huggingface.md).
$PIP install -q "transformers==4.57.6"
$PIP install -q --no-deps --no-build-isolation -e .
# ...which mmpretrain 1.2.0's multimodal models cannot import: the gate closes them at start-up,
# before mmdet's or mmseg's own imports of mmpretrain (dinat_mm_versions.py).
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
rm -f "$SITE/_mmpretrain_multimodal_gate.py" "$SITE/mmpretrain_multimodal_gate.pth"
echo "import dinat_mm_versions; dinat_mm_versions.close_mmpretrain_multimodal_gate()" > "$SITE/dinat_mm_versions.pth"
# na2d's C++ kernel is compiled for this CPU on first use (about 35 s); do it now, not in a demo.
"$PY" -c "from dinat_mm.ops import cpu_kernel as k; r = k.build(); print('na2d CPU kernel:', r or k.build_dir())"
touch "$STAMP"
echo "environment ready in $(( $(date +%s) - start )) s"
