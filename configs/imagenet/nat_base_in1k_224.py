# NAT-Base ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 90 M parameters, 13.7 GFLOPs, top-1 84.3 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/nat_base_in1k_224.py \
#     https://shi-labs.com/projects/nat/checkpoints/CLS/nat_base.pth
_base_ = [
    '../_base_/models/image_classifier_dinat.py', '../_base_/datasets/imagenet_224.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='NAT', arch='base', out_indices=(3, )),
    head=dict(in_channels=1024))
