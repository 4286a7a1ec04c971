# NAT-iso-Small ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 22 M parameters, 4.3 GFLOPs, top-1 80.0 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/nat_isotropic_small_in1k_224.py \
#     https://shi-labs.com/projects/dinat/checkpoints/isotropic/nat_isotropic_small_in1k_224.pth
_base_ = [
    '../_base_/models/image_classifier_dinat.py', '../_base_/datasets/imagenet_224.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime_cls.py'
]
# the release's isotropic.py: 16x16 patches, 12 layers at 14x14, 7x7 neighbourhoods
model = dict(
    backbone=dict(
        _delete_=True, type='NATIsotropic', img_size=224, patch_size=16, embed_dim=384, depth=12,
        num_heads=12, mlp_ratio=4.0, kernel_size=7, dilation=1, drop_path_rate=0.1),
    head=dict(in_channels=384))
