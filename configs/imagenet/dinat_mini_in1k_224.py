# DiNAT-Mini ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 20 M parameters, 2.7 GFLOPs, top-1 81.8 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/dinat_mini_in1k_224.py \
#     https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_mini_in1k_224.pth
_base_ = [
    '../_base_/models/image_classifier_dinat.py', '../_base_/datasets/imagenet_224.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime_cls.py'
]
model = dict(
    backbone=dict(type='DiNAT', arch='mini', out_indices=(3, )),
    head=dict(in_channels=512))
