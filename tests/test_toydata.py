"""The toy dataset generators: deterministic, consistent annotations, nothing half-written."""
import hashlib
import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from dinat_mm.toydata import make_toy_ade, make_toy_coco, make_toy_imagenet


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_coco_generator_is_deterministic_and_boxes_match_polygons(tmp_path):
    a = make_toy_coco(tmp_path / 'a', num_train=6, num_val=2, size=128, seed=3)
    b = make_toy_coco(tmp_path / 'b', num_train=6, num_val=2, size=128, seed=3)
    assert digest(a) == digest(b)
    coco = json.loads((a / 'annotations' / 'instances_train.json').read_text())
    assert [c['name'] for c in coco['categories']] == ['circle', 'square', 'triangle']
    assert len(coco['images']) == 6 and coco['annotations']
    for ann in coco['annotations']:
        rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'], 128, 128))
        x, y, w, h = mask_utils.toBbox(rle)
        assert abs(x - ann['bbox'][0]) <= 1 and abs(y - ann['bbox'][1]) <= 1
        assert abs(w - ann['bbox'][2]) <= 2 and abs(h - ann['bbox'][3]) <= 2
        assert 1 <= ann['category_id'] <= 3 and ann['area'] > 0
    assert cv2.imread(str(a / 'train' / coco['images'][0]['file_name'])).shape == (128, 128, 3)


def test_ade_generator_layout_and_labels(tmp_path):
    root = make_toy_ade(tmp_path / 'ade', num_train=4, num_val=2, size=96, seed=1)
    labels = sorted((root / 'annotations' / 'training').glob('*.png'))
    assert len(labels) == 4 and len(list((root / 'images' / 'validation').glob('*.jpg'))) == 2
    values = set()
    for path in labels:
        values |= set(np.unique(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)).tolist())
    assert values <= {0, 1, 2, 3, 4, 5} and {0, 1, 2} <= values


def test_existing_dataset_is_kept_and_foreign_folders_are_refused(tmp_path):
    root = make_toy_coco(tmp_path / 'coco', num_train=2, num_val=1, size=64)
    before = (root / 'annotations' / 'instances_train.json').stat().st_mtime_ns
    make_toy_coco(root, num_train=2, num_val=1, size=64)  # same parameters: nothing rewritten
    assert (root / 'annotations' / 'instances_train.json').stat().st_mtime_ns == before
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='is not a dinat_mm toy dataset'):
        make_toy_coco(foreign, num_train=2, num_val=1, size=64)
    assert (foreign / 'notes.txt').read_text() == 'keep me'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.tmp_toy_')]


def test_ade_shape_classes_have_their_own_hue_bands(tmp_path):
    # The segmentation set's shape classes carry a colour cue: OpenCV hues 0-25 (circle),
    # 45-85 (square), 125-165 (triangle). Checked on each shape's interior, away from JPEG edges.
    root = make_toy_ade(tmp_path / 'ade', num_train=12, num_val=1, size=128, seed=2)
    bands = {3: (0, 25), 4: (45, 85), 5: (125, 165)}
    seen = set()
    for path in sorted((root / 'annotations' / 'training').glob('*.png')):
        label = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        hsv = cv2.cvtColor(cv2.imread(str(root / 'images' / 'training' / (path.stem + '.jpg'))), cv2.COLOR_BGR2HSV)
        for cls, (low, high) in bands.items():
            inside = cv2.erode((label == cls).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if inside.sum() < 20:
                continue
            hue = float(np.median(hsv[..., 0][inside]))
            distance = min(abs(hue - low), abs(hue - high), abs(hue + 180 - high), abs(low + 180 - hue))
            assert low <= hue <= high or distance <= 4, (path.name, cls, hue)
            seen.add(cls)
    assert seen == {3, 4, 5}


def test_imagenet_textures_are_drawn_in_their_own_hue_bands(tmp_path):
    # Each texture's pattern has an OpenCV hue within 20 of its class's centre (0, 30, ..., 150, in
    # TEXTURES order); the other colour is free. Thin grid lines and small dots cover a few percent
    # of an image, and JPEG blurs their edges: at least 2 % of the pixels, saturated, must be in band.
    root = make_toy_imagenet(tmp_path / 'imagenet', num_train=60, num_val=6, size=128, seed=4)
    centres = dict(blobs=0, checker=30, dots=60, grid=90, rings=120, stripes=150)
    for kind, centre in centres.items():
        paths = sorted((root / 'train' / kind).glob('*.jpg'))
        assert len(paths) == 10
        for path in paths:
            hsv = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2HSV).astype(int)
            distance = np.minimum(np.abs(hsv[..., 0] - centre), 180 - np.abs(hsv[..., 0] - centre))
            in_band = ((distance <= 20 + 3) & (hsv[..., 1] >= 100)).mean()
            assert in_band >= 0.02, (path.name, kind, in_band)
