# The classification demo: a DiNAT-Mini ImageNet classifier (configs/imagenet/dinat_mini_in1k_224.py)
# trained from scratch on the embedded toy set (tools/make_toy_data.py imagenet data/toy_imagenet:
# six textures, each in hues from its own band, 128x128 images in class folders), on CPU.
# Changed from the ImageNet config: data (6 classes, mmpretrain's CustomDataset), image size
# (trained and tested at 112 px), the dilations that fit 112 px (levels 28, 14, 7 and 4 wide),
# augmentation (crop and flip only: no RandAugment, erasing, Mixup or CutMix) and a short
# iteration-based schedule that fits 2 CPU cores.
_base_ = ['../imagenet/dinat_mini_in1k_224.py']

data_root = 'data/toy_imagenet/'
classes = ('blobs', 'checker', 'dots', 'grid', 'rings', 'stripes')
img_size = 112
max_iters = 400

data_preprocessor = dict(num_classes=len(classes))
model = dict(
    backbone=dict(dilations=[[1, 4, 1], [1, 2, 1, 2], [1] * 6, [1] * 5], drop_path_rate=0.0),
    head=dict(num_classes=len(classes)),
    train_cfg=dict(_delete_=True))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=128, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root=data_root, data_prefix='train', classes=classes,
        pipeline=train_pipeline),
    sampler=dict(type='InfiniteSampler', shuffle=True))
val_dataloader = dict(
    batch_size=32,
    num_workers=1,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root=data_root, data_prefix='val', classes=classes,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [dict(type='Accuracy', topk=(1, 5)), dict(type='ConfusionMatrix')]
test_evaluator = val_evaluator

# 16 images per step: a rate well below the release's 1e-3 for 1024 (at 1e-3 this model does not leave chance)
optim_wrapper = dict(optimizer=dict(lr=3e-4, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, end=30),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=30, end=max_iters),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(logger=dict(interval=25), checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
