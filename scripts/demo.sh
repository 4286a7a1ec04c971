#!/usr/bin/env bash
# The main job on the embedded toy data, on CPU: generate the toy COCO set, train Mask R-CNN with
# a DiNAT-Mini backbone from scratch, evaluate on the toy val split (COCO AP table) and draw the
# predictions. Sets up .venv/ first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PY=.venv/bin/python
CONFIG=configs/toy/maskrcnn_dinat_mini_toy.py
WORK=${WORK:-work_dirs/demo_maskrcnn_dinat_mini_toy}
start=$(date +%s)
$PY tools/make_toy_data.py coco data/toy_coco
# Validation is left to tools/test.py below, which evaluates and draws in one pass.
$PY tools/train.py $CONFIG --work-dir "$WORK" --cfg-options train_cfg.val_interval=1000000
$PY tools/test.py $CONFIG "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK" --show-dir "$WORK/predictions"
echo "demo finished in $(( $(date +%s) - start )) s: checkpoint $(cat "$WORK/last_checkpoint"), pictures in $WORK/predictions/"
