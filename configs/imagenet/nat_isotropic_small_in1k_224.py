# NAT-iso-Small ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 22 M parameters, 4.3 GFLOPs, top-1 80.0 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/nat_isotropic_small_in1k_224.py \
#     https://shi-labs.com/projects/dinat/checkpoints/isotropic/nat_isotropic_small_in1k_224.pth
# DiNAT-iso-Small with every dilation 1
_base_ = ['./dinat_isotropic_small_in1k_224.py']
model = dict(backbone=dict(dilation=1))
