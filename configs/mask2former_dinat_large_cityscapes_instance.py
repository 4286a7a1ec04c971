# Mask2Former, DiNAT-Large (kernel 11, ImageNet-22K), Cityscapes instance segmentation (8 classes),
# 512x1024 crops, 90k iterations at batch 16, 200 queries: the release's
# mask2former/configs/cityscapes/instance-segmentation/dinat/maskformer2_dinat_large_IN21k_384_bs16_90k.yaml
# (Base-Cityscapes-InstanceSegmentation.yaml: short side a random choice of 512..2048 with the long
# side at most 4096, a 512x1024 crop, flip, photometric distortion; tested at 1024x2048) on
# mmdet 3.x's Mask2Former and CityscapesDataset (data/cityscapes with mmdet's
# annotations/instancesonly_filtered_gtFine_{train,val}.json from its cityscapes converter).
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', './_base_/models/mask2former_dinat_large.py']
data_root = 'data/cityscapes/'
crop_size = (512, 1024)
num_things_classes = 8
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size=crop_size, img_pad_value=0, pad_mask=True, mask_pad_value=0, pad_seg=False)]),
    backbone={{_base_.dinat_large_k11}},
    panoptic_head=dict(in_channels={{_base_.dinat_large_channels}}, num_queries=200,
                       num_things_classes=num_things_classes, num_stuff_classes=0,
                       loss_cls=dict(class_weight=[1.0] * num_things_classes + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=num_things_classes, num_stuff_classes=0))
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoiceResize', scales=[(4096, int(x * 0.1 * 1024)) for x in range(5, 21)], keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, crop_type='absolute', recompute_bbox=True, allow_negative_crop=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(
    _delete_=True, type='CityscapesDataset', filter_cfg=dict(filter_empty_gt=True, min_size=32), data_root=data_root, ann_file='annotations/instancesonly_filtered_gtFine_train.json',
    data_prefix=dict(img='leftImg8bit/train/'), pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(
    _delete_=True, type='CityscapesDataset', test_mode=True, data_root=data_root, ann_file='annotations/instancesonly_filtered_gtFine_val.json',
    data_prefix=dict(img='leftImg8bit/val/'), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instancesonly_filtered_gtFine_val.json')
test_evaluator = val_evaluator
optim_wrapper = dict(paramwise_cfg={{_base_.m2f_paramwise_cfg}})
max_iters = 90000
param_scheduler = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=5000, dynamic_intervals=None)
