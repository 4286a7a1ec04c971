#!/usr/bin/env bash
# The main job on embedded toy data, on CPU. Sets up .venv/ first when it is missing.
#   scripts/demo.sh det  (default) Mask R-CNN DiNAT-Mini on toy COCO-format shapes: COCO AP table
#   scripts/demo.sh seg  UPerNet DiNAT-Mini on a toy ADE20K-layout set: mIoU table
#   scripts/demo.sh cls  a DiNAT-Mini classifier on toy textures in class folders: top-1/top-5 and
#                        the confusion matrix
# Generates the data, trains from scratch, evaluates on the toy val split and draws predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:-det}
case "$KIND" in
  det) CONFIG=configs/toy/maskrcnn_dinat_mini_toy.py; DATA=(coco data/toy_coco) ;;
  seg) CONFIG=configs/toy/upernet_dinat_mini_toy.py; DATA=(ade data/toy_ade) ;;
  cls) CONFIG=configs/toy/classifier_dinat_mini_toy.py; DATA=(imagenet data/toy_imagenet) ;;
  *) echo "usage: scripts/demo.sh [det|seg|cls]" >&2; exit 2 ;;
esac
bash scripts/setup_env.sh
PY=.venv/bin/python
WORK=${WORK:-work_dirs/demo_$(basename "$CONFIG" .py)}
start=$(date +%s)
$PY tools/make_toy_data.py "${DATA[@]}"
# No validation while training: tools/test.py below evaluates and draws in one pass.
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --cfg-options val_cfg=None val_dataloader=None val_evaluator=None
$PY tools/test.py "$CONFIG" "$(cat "$WORK/last_checkpoint")" --work-dir "$WORK" --show-dir "$WORK/predictions"
echo "demo ($KIND) finished in $(( $(date +%s) - start )) s: checkpoint $(cat "$WORK/last_checkpoint"), pictures in $WORK/predictions/"
