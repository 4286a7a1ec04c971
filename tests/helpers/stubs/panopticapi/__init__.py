"""A stand-in for panopticapi (github.com/cocodataset/panopticapi, not on PyPI) holding only what
mmdet's LoadPanopticAnnotations imports: ``utils.rgb2id``. No ``evaluation``: PQ needs the real one."""
