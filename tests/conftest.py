"""Test-session set-up shared by every test module."""
import os

# Triton decides at decoration time whether its kernels are compiled or interpreted: set before any
# test imports dinat_mm.ops.triton_kernels, so the Triton backend runs its kernels on CPU tensors in
# Triton's interpreter (tests/test_triton.py). CUDA-less 'auto' dispatch is unaffected: on CPU it
# never picks the Triton kernels.
os.environ['TRITON_INTERPRET'] = '1'
