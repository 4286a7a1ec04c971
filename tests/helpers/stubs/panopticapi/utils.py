"""COCO panoptic PNGs encode a segment id in RGB as id = R + 256 * G + 256**2 * B."""
import numpy as np


def rgb2id(color):
    color = np.asarray(color)
    if color.ndim == 3:
        color = color.astype(np.int64)
        return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]
    return int(color[0] + 256 * color[1] + 256 * 256 * color[2])
