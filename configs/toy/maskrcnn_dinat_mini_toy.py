# The demo: Mask R-CNN DiNAT-Mini (configs/maskrcnn_dinat_mini_coco.py) trained from scratch on
# the embedded toy set (tools/make_toy_data.py coco data/toy_coco, 256x256 images), on CPU.
# Changed from the COCO config: data (3 classes), image size (trained and tested at 192 px) and
# schedule only.
# - DiNAT picks its dilations per input resolution (the release uses 8/4/2/1 at 224 px and
#   28/14/7/3 at 800-1333 px). At 192 px the COCO dilations would zero-pad every 48x48 level-0 map
#   to 196x196; the 224-px (ImageNet) dilations of the mini preset pad only a little (48 -> 56,
#   24 -> 28, 12 -> 14, as the release's padding rule does for any small map).
# - No ImageNet checkpoint (nothing is downloaded here): init_cfg=None, training from scratch.
# - The schedule fits 2 CPU cores: fewer proposals and sampled RoIs, iteration-based, short.
_base_ = ['../maskrcnn_dinat_mini_coco.py']

data_root = 'data/toy_coco/'
metainfo = dict(classes=('circle', 'square', 'triangle'),
                palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30)])
image_size = (192, 192)
max_iters = 600

model = dict(
    backbone=dict(
        dilations=[[1, 8, 1], [1, 4, 1, 4], [1, 2, 1, 2, 1, 2], [1, 1, 1, 1, 1]],
        drop_path_rate=0.1,
        init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    batch_sampler=None,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min_ratio=0.05),
]
optim_wrapper = dict(optimizer=dict(lr=3e-4), clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False, window_size=10)
randomness = dict(seed=0, deterministic=False)
