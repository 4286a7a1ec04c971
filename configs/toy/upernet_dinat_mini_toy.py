# The segmentation demo: UPerNet DiNAT-Mini (configs/upernet_dinat_mini_ade20k.py) trained from
# scratch on the embedded toy set (tools/make_toy_data.py ade data/toy_ade, 256x256 images), on CPU.
# Changed from the ADE20K config: data (5 classes, 0 = ignore), image size, head width and schedule.
# - Trained and tested at 128 px, with UPerHead at 128 channels (FCN auxiliary head at 64) instead
#   of 512 (256): the 512-channel convolutions at stride 4 cost about 77 GFLOP per 256x256 image
#   and were nearly all of an iteration's time on 2 cores (1.3 s vs 0.33 s per iteration here).
# - DiNAT's dilations follow the image size, as in the release (level size // kernel size: 8/4/2/1
#   at 224 px, 16/8/4/2 at 512 px); at 128 px the levels are 32/16/8/4 wide, hence 4/2/1/1.
# - No ImageNet checkpoint (nothing is downloaded here): init_cfg=None, training from scratch.
_base_ = ['../upernet_dinat_mini_ade20k.py']

data_root = 'data/toy_ade'
metainfo = dict(classes=('ground', 'water', 'circle', 'square', 'triangle'),
                palette=[[120, 120, 70], [0, 80, 200], [220, 20, 60], [0, 200, 130], [250, 170, 30]])
crop_size = (128, 128)
max_iters = 1900

data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        dilations=[[1, 4, 1], [1, 2, 1, 2], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
        drop_path_rate=0.1,
        init_cfg=None),
    decode_head=dict(channels=128, num_classes=5),
    auxiliary_head=dict(channels=64, num_classes=5))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
               seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    dataset=dict(dataset, data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(dataset, data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
optim_wrapper = dict(optimizer=dict(lr=4e-4))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2))
randomness = dict(seed=0)
