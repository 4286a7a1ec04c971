"""dinat_mm's benchmarks: ``python -m benchmarks`` (``make bench``).

- :mod:`.cpu`: the CPU tables of docs/performance.md: the DiNAT-T ImageNet classifier beside
  mmpretrain's Swin-T (``--classifier`` runs only that row), na2d at DiNAT-T's level shapes, DiNAT-T
  beside mmdet's Swin-T (eager, compiled, deployed, bfloat16), and the kernel floor of a compiled
  forward.
- :mod:`.device`: ``--device cuda`` (or ``cpu``, to test the command without a GPU): na2d's
  backends beside SDPA, the backbones and a Mask R-CNN training step.

Every shape and setting comes from the shipped DiNAT-T configs and the variant table
(:mod:`.workloads`); peers run alternately in one process and ratios are what to compare.
"""
