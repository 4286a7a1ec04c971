"""FLOP counting: neighborhood attention counts exactly 2 * N * k^2 * head_dim * heads
multiply-adds per layer, whatever tiling the implementation uses."""
import torch

from dinat_mm import DiNAT
from dinat_mm.analysis import count, flop_analyzer


def test_na_is_counted_from_the_definition():
    model = DiNAT(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], kernel_size=5,
                  dilations=[[2], [1], [1, 2], [1]]).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        by_op = flop_analyzer(model, (x,)).by_operator()
    # level maps 24x32, 12x16, 6x8 (padded to 5*2=10 on both axes for the dilated layer), 3x4 (padded to 5x5)
    tokens = [24 * 32, 12 * 16, 6 * 8, 10 * 10, 5 * 5]
    channels = [16, 32, 64, 64, 128]
    expected = sum(2 * n * 25 * c for n, c in zip(tokens, channels))
    assert by_op['PythonOp.NA2DTraced'] == expected


def test_dinat_tiny_matches_the_published_4_3_gflops_at_224():
    result = count(DiNAT(arch='tiny'), (torch.randn(1, 3, 224, 224),))
    assert abs(result['flops'] / 1e9 - 4.3) < 0.05 and abs(result['params'] / 1e6 - 27.4) < 0.1
