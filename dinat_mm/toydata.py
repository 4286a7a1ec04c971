"""Deterministic toy datasets for the demos and tests: nothing is downloaded.

- :func:`make_toy_coco`: COCO-format instance segmentation. Coloured, textured shapes (circle,
  square, triangle; colour says nothing about the class) on textured noise, 1-4 per image, later
  shapes occluding earlier ones; polygons and boxes describe the visible parts.
- :func:`make_toy_ade`: ADE20K-layout semantic segmentation (images/ and annotations/ with
  training/ and validation/, label PNGs where 0 is "ignore", as ``reduce_zero_label`` expects).
- :func:`make_toy_imagenet`: ImageNet-style classification in class folders (``train/<class>/``,
  ``val/<class>/``, mmpretrain's CustomDataset layout): six textures at random scales, orientations
  and phases, each drawn in hues from its own band, on random colours, with noise.

All write with :func:`dinat_mm.fileio.written_atomically`, so an interrupted run leaves nothing
half-written, and all return at once when the folder already holds the same dataset.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .fileio import written_atomically

SHAPES = ('circle', 'square', 'triangle')
# Semantic classes are told apart by appearance as well as by shape (as ADE20K's are): in the
# segmentation set each shape class has its own band of hues (red-orange, green, violet), wide and
# within a random saturation/value, so colour is a cue, not a lookup. The detection set keeps
# colour free of class information.
ADE_SHAPE_HUES = ((0, 25), (45, 85), (125, 165))
ADE_CLASSES = ('ground', 'water', 'circle', 'square', 'triangle')  # label PNG values 1..5
_STAMP = 'dinat_mm_toy.json'


def _background(rng: np.random.RandomState, size: int, contrast: float = 0.5) -> np.ndarray:
    low = rng.rand(size // 32 + 2, size // 32 + 2, 3).astype(np.float32)
    smooth = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    img = 255 * (0.25 + contrast * smooth) + rng.randn(size, size, 3) * 18
    return np.clip(img, 0, 255)


def _shape_mask(rng: np.random.RandomState, shape: str, size: int, radius_range=(1 / 14, 1 / 5)) -> np.ndarray:
    radius = rng.randint(int(size * radius_range[0]), int(size * radius_range[1]))
    cx, cy = rng.randint(radius // 2, size - radius // 2, size=2)
    mask = np.zeros((size, size), np.uint8)
    if shape == 'circle':
        cv2.circle(mask, (int(cx), int(cy)), int(radius), 1, -1)
    else:
        corners = 4 if shape == 'square' else 3
        start = rng.rand() * 2 * np.pi
        angles = start + np.arange(corners) * 2 * np.pi / corners
        points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _vivid(rng: np.random.RandomState, hue: int, low: int) -> np.ndarray:
    """The BGR colour of OpenCV ``hue`` (0-180) at a random saturation and value in [low, 255]."""
    hsv = np.uint8([[[hue, rng.randint(low, 256), rng.randint(low, 256)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _paint(rng: np.random.RandomState, img: np.ndarray, mask: np.ndarray, hues=(0, 180)) -> None:
    """A random saturated colour (OpenCV hue drawn from ``hues``) with a little texture."""
    colour = _vivid(rng, rng.randint(*hues), 150)
    texture = rng.randn(int(mask.sum()), 1) * 12
    img[mask] = np.clip(colour[None] + texture, 0, 255)


def _scene(rng: np.random.RandomState, size: int, max_objects: int, min_area: int
           ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    img = _background(rng, size)
    objects: List[Tuple[int, np.ndarray]] = []
    for _ in range(rng.randint(1, max_objects + 1)):
        label = rng.randint(len(SHAPES))
        mask = _shape_mask(rng, SHAPES[label], size)
        _paint(rng, img, mask)
        objects = [(lab, m & ~mask) for lab, m in objects] + [(label, mask)]
    return img, [(lab, m) for lab, m in objects if m.sum() >= min_area]


def _polygons(mask: np.ndarray) -> List[List[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _write_atomically(root: Path, params: Dict, fill) -> Path:
    """Run ``fill(tmp_dir)`` and move the result to ``root``; skip if ``root`` has these params."""
    root = Path(root)
    stamp = root / _STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == params:
        return root
    if root.exists() and any(root.iterdir()) and not stamp.is_file():
        raise FileExistsError(f'{root} exists and is not a dinat_mm toy dataset; choose another folder')
    root.parent.mkdir(parents=True, exist_ok=True)
    with written_atomically(root) as partial:
        tmp = Path(partial)
        tmp.mkdir()
        fill(tmp)
        (tmp / _STAMP).write_text(json.dumps(params))
    return root


def make_toy_coco(root, num_train: int = 400, num_val: int = 50, size: int = 256, seed: int = 0) -> Path:
    """Write ``root/{train,val}/*.jpg`` and ``root/annotations/instances_{train,val}.json``."""
    params = dict(kind='coco', num_train=num_train, num_val=num_val, size=size, seed=seed, version=1)

    def fill(tmp: Path) -> None:
        (tmp / 'annotations').mkdir()
        for split, count, split_seed in (('train', num_train, seed), ('val', num_val, seed + 10_000)):
            rng = np.random.RandomState(split_seed)
            (tmp / split).mkdir()
            images, annotations = [], []
            for image_id in range(1, count + 1):
                img, objects = _scene(rng, size, max_objects=4, min_area=size * size // 400)
                name = f'{image_id:06d}.jpg'
                cv2.imwrite(str(tmp / split / name), img.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
                images.append(dict(id=image_id, file_name=name, height=size, width=size))
                for label, mask in objects:
                    ys, xs = np.nonzero(mask)
                    x0, y0 = int(xs.min()), int(ys.min())
                    annotations.append(dict(
                        id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                        segmentation=_polygons(mask), area=float(mask.sum()), iscrowd=0,
                        bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]))
            coco = dict(info=dict(description='dinat_mm toy shapes', version='1'), licenses=[],
                        images=images, annotations=annotations,
                        categories=[dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(SHAPES)])
            (tmp / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))

    return _write_atomically(Path(root), params, fill)


def make_toy_ade(root, num_train: int = 300, num_val: int = 50, size: int = 256, seed: int = 0) -> Path:
    """Write ``root/images/{training,validation}/*.jpg`` and ``root/annotations/...*.png``.

    Labels: 0 ignore (a 2-pixel band around every shape), 1 ground and 2 water (two background
    textures split by a wavy line), 3..5 the shapes, each class in its own band of hues and drawn
    larger than the detection set's (radius 1/8 to 1/4 of the image) so that their outlines
    survive the demo's 128-px training size."""
    params = dict(kind='ade', num_train=num_train, num_val=num_val, size=size, seed=seed, version=3)

    def fill(tmp: Path) -> None:
        for split, count, split_seed in (('training', num_train, seed), ('validation', num_val, seed + 10_000)):
            rng = np.random.RandomState(split_seed)
            for sub in ('images', 'annotations'):
                (tmp / sub / split).mkdir(parents=True)
            for index in range(count):
                ground = _background(rng, size, contrast=0.3)
                water = _background(rng, size, contrast=0.3) * 0.4 + np.array([120, 60, 0]) * 0.6
                water[np.arange(size) // 4 % 2 == 0] *= 0.8  # horizontal stripes: a texture cue
                x = np.arange(size)
                phase, amplitude, level = rng.rand() * 6.3, rng.randint(5, size // 6), rng.randint(size // 4, 3 * size // 4)
                boundary = level + amplitude * np.sin(x / size * 2 * np.pi * 1.5 + phase)
                is_water = np.arange(size)[:, None] > boundary[None, :]
                img = np.where(is_water[..., None], water, ground)
                label = np.where(is_water, 2, 1).astype(np.uint8)
                shapes = np.zeros((size, size), bool)
                for _ in range(rng.randint(1, 4)):
                    cls = rng.randint(len(SHAPES))
                    mask = _shape_mask(rng, SHAPES[cls], size, radius_range=(1 / 8, 1 / 4))
                    _paint(rng, img, mask, ADE_SHAPE_HUES[cls])
                    label[mask] = 3 + cls
                    shapes |= mask
                band = cv2.dilate(shapes.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & \
                    ~cv2.erode(shapes.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
                label[band] = 0
                name = f'{index:06d}'
                cv2.imwrite(str(tmp / 'images' / split / f'{name}.jpg'), np.clip(img, 0, 255).astype(np.uint8),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                cv2.imwrite(str(tmp / 'annotations' / split / f'{name}.png'), label)

    return _write_atomically(Path(root), params, fill)


TEXTURES = ('blobs', 'checker', 'dots', 'grid', 'rings', 'stripes')
# Each texture's pattern takes its hue (OpenCV's 0-180) from a band around its own centre, the
# centres spread evenly (30 apart for six) and HUE_SPREAD either side, so neighbouring bands overlap:
# colour is a cue, as in ImageNet, and on its own tells the class apart from one neighbour only near
# a band's centre (about 73 % right at best); the texture settles the rest. Six textures that differ
# in geometry alone are not learned from a few hundred images by a transformer trained from scratch
# in minutes.
HUE_SPREAD = 20


def _texture(rng: np.random.RandomState, kind: str, size: int) -> np.ndarray:
    """One texture image: a pattern coloured in a hue from the kind's band (:data:`HUE_SPREAD`)
    on a random colour, plus noise. The pattern's scale, orientation, phase and centre are random."""
    period = rng.uniform(size / 12, size / 5)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle) + rng.uniform(0, period)
    v = -xx * np.sin(angle) + yy * np.cos(angle) + rng.uniform(0, period)
    if kind == 'stripes':
        pattern = (u % period) < period / 2
    elif kind == 'checker':
        pattern = ((u // (period / 2)) + (v // (period / 2))) % 2 == 0
    elif kind == 'grid':
        width = period / 6
        pattern = ((u % period) < width) | ((v % period) < width)
    elif kind == 'dots':
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        pattern = du ** 2 + dv ** 2 < (period / 4) ** 2
    elif kind == 'rings':
        cx, cy = rng.uniform(0, size, 2)
        pattern = (np.hypot(xx - cx, yy - cy) % period) < period / 2
    else:  # blobs: smooth random noise, thresholded
        cells = max(2, int(size / period))
        low = cv2.resize(rng.rand(cells, cells).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        pattern = low > np.median(low)
    centre = TEXTURES.index(kind) * 180 // len(TEXTURES)
    hue = (centre + rng.randint(-HUE_SPREAD, HUE_SPREAD + 1)) % 180
    colours = np.stack([_vivid(rng, hue, 120), rng.randint(0, 256, size=3)]).astype(np.float32)
    while np.abs(colours[0] - colours[1]).sum() < 150:  # the two colours must differ visibly
        colours[1] = rng.randint(0, 256, size=3)
    img = np.where(pattern[..., None], colours[0], colours[1]) + rng.randn(size, size, 3) * 12
    return np.clip(img, 0, 255)


def make_toy_imagenet(root, num_train: int = 600, num_val: int = 120, size: int = 128, seed: int = 0) -> Path:
    """Write ``root/{train,val}/<texture>/*.jpg``: ``num_train`` and ``num_val`` images in all, an
    equal share per class (:data:`TEXTURES`)."""
    params = dict(kind='imagenet', num_train=num_train, num_val=num_val, size=size, seed=seed, version=2)

    def fill(tmp: Path) -> None:
        for split, count, split_seed in (('train', num_train, seed), ('val', num_val, seed + 10_000)):
            rng = np.random.RandomState(split_seed)
            for label, kind in enumerate(TEXTURES):
                (tmp / split / kind).mkdir(parents=True)
                for index in range(count // len(TEXTURES)):
                    cv2.imwrite(str(tmp / split / kind / f'{index:05d}.jpg'), _texture(rng, kind, size).astype(np.uint8),
                                [cv2.IMWRITE_JPEG_QUALITY, 95])

    return _write_atomically(Path(root), params, fill)


def make_toy_hub(root, seed: int = 0) -> Path:
    """Write ``root/model/`` as Hugging Face publishes a DinatForImageClassification (config.json,
    model.safetensors) with random weights of DiNAT-Mini's ImageNet-1K architecture, and
    ``root/image.jpg`` (a toy texture): a stand-in for a hub download, which this needs none of."""
    params = dict(kind='hub', seed=seed, version=2)

    def fill(tmp: Path) -> None:
        import torch

        from . import hf
        from .models.variants import ARCH_SETTINGS
        hf.enable()
        from transformers import DinatConfig, DinatForImageClassification
        arch = ARCH_SETTINGS['mini']
        config = DinatConfig(embed_dim=arch['embed_dim'], depths=arch['depths'], num_heads=arch['num_heads'],
                             kernel_size=arch['kernel_size'], dilations=arch['dilations'], mlp_ratio=arch['mlp_ratio'],
                             layer_scale_init_value=0.0, num_labels=1000,
                             id2label={i: f'class_{i}' for i in range(1000)})
        torch.manual_seed(seed)
        DinatForImageClassification(config).save_pretrained(tmp / 'model')
        cv2.imwrite(str(tmp / 'image.jpg'), _texture(np.random.RandomState(seed), 'rings', 256).astype(np.uint8))

    return _write_atomically(Path(root), params, fill)
