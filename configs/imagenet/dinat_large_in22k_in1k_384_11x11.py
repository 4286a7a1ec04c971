# DiNAT-Large 384 with 11x11 neighbourhoods, ImageNet-22K pre-trained ImageNet-1K classifier (mmpretrain), as the DiNAT release trains it
# (SHI-Labs/Neighborhood-Attention-Transformer, classification/configs).
# Release: 200 M parameters, 92.4 GFLOPs, top-1 87.5 %. Its weights, evaluated with
#   python tools/test.py configs/imagenet/dinat_large_in22k_in1k_384_11x11.py \
#     https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_large_in22k_in1k_384_11x11.pth
_base_ = [
    '../_base_/models/image_classifier_dinat.py', '../_base_/datasets/imagenet_384.py',
    '../_base_/schedules/imagenet_finetune_30e.py', '../_base_/default_runtime_cls.py'
]
# 384 px with 11x11 neighbourhoods and the 224 px dilations (the release's dinat_large_384_11x11)
model = dict(
    backbone=dict(
        type='DiNAT', arch='large', out_indices=(3, ), kernel_size=11,
        # fine-tuned from the ImageNet-22K classifier: its backbone (the 22K head does not fit)
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet22k/dinat_large_in22k_224_11x11interp.pth')),
    head=dict(in_channels=1536),
    train_cfg=dict(_delete_=True))  # no Mixup/CutMix when fine-tuning
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(weight_decay=1e-10))
