# NAT-iso-Base ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 86 M parameters, 16.9 GFLOPs, top-1 81.6 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/nat_isotropic_base_in1k_224.py \
#     https://shi-labs.com/projects/dinat/checkpoints/isotropic/nat_isotropic_base_in1k_224.pth
# DiNAT-iso-Base with every dilation 1
_base_ = ['./dinat_isotropic_base_in1k_224.py']
model = dict(backbone=dict(dilation=1))
