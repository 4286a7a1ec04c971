"""dinat_mm: DiNAT backbone for OpenMMLab 2.x."""
__version__ = "0.1.0"
