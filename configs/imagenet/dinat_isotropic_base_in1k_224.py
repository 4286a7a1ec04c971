# DiNAT-iso-Base ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 86 M parameters, 16.9 GFLOPs, top-1 82.1 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/dinat_isotropic_base_in1k_224.py \
#     https://shi-labs.com/projects/dinat/checkpoints/isotropic/dinat_isotropic_base_in1k_224.pth
_base_ = [
    '../_base_/models/image_classifier_dinat.py', '../_base_/datasets/imagenet_224.py',
    '../_base_/schedules/imagenet_300e_adamw.py', '../_base_/default_runtime_cls.py'
]
# the release's isotropic.py: 16x16 patches, 12 layers at 14x14, 7x7 neighbourhoods, every other layer dilated by 2
model = dict(
    backbone=dict(
        _delete_=True, type='NATIsotropic', img_size=224, patch_size=16, embed_dim=768, depth=12,
        num_heads=24, mlp_ratio=4.0, kernel_size=7, dilation=2, drop_path_rate=0.4),
    head=dict(in_channels=768))
# 50 warm-up epochs and an exponential moving average of the weights (decay 0.9998 per step)
warmup_epochs = 50
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=warmup_epochs, end=300,
         convert_to_iter_based=True),
]
custom_hooks = [dict(type='RNGStateHook'), dict(type='EMAHook', momentum=2e-4, priority='ABOVE_NORMAL')]
