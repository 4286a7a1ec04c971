# ADE20K for mmdet's Mask2Former (panoptic and instance), as the DiNAT release's detectron2 configs
# feed it (mask2former/configs/ade20k/*/Base-ADE20K-*.yaml): short side a random choice of
# 320..1280 (step 64) with the long side at most 2560, a 640x640 crop, flip and photometric
# distortion (detectron2's COLOR_AUG_SSD); tested at short side 640, long side at most 2560.
# data/ADEChallengeData2016 with mmdet's ade20k_{panoptic,instance}_{train,val}.json (and the
# panoptic PNG folders), written by mmdet's tools/dataset_converters/ade20k2coco.py.
m2f_ade20k_root = 'data/ADEChallengeData2016/'
m2f_ade20k_crop = (640, 640)


def _pipelines(load):
    augment = [
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomChoiceResize', scales=[(2560, int(x * 0.1 * 640)) for x in range(5, 21)], keep_ratio=True),
        dict(type='RandomCrop', crop_size=m2f_ade20k_crop, crop_type='absolute', recompute_bbox=True,
             allow_negative_crop=True),
        dict(type='PhotoMetricDistortion'),
        dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-5, 1e-5), by_mask=True),
        dict(type='PackDetInputs'),
    ]
    test = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(2560, 640), keep_ratio=True), load,
            dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    return [dict(type='LoadImageFromFile', to_float32=True), load] + augment, test


_panoptic_train, _panoptic_test = _pipelines(dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True,
                                                  with_seg=True))
_instance_train, _instance_test = _pipelines(dict(type='LoadAnnotations', with_bbox=True, with_mask=True))
m2f_ade20k_panoptic_train = dict(_delete_=True, type='ADE20KPanopticDataset', data_root=m2f_ade20k_root, ann_file='ade20k_panoptic_train.json',
                                 data_prefix=dict(img='images/training/', seg='ade20k_panoptic_train/'),
                                 pipeline=_panoptic_train,
                                 filter_cfg=dict(filter_empty_gt=True, min_size=32))
m2f_ade20k_panoptic_val = dict(_delete_=True, type='ADE20KPanopticDataset', data_root=m2f_ade20k_root, ann_file='ade20k_panoptic_val.json',
                               data_prefix=dict(img='images/validation/', seg='ade20k_panoptic_val/'),
                               pipeline=_panoptic_test, test_mode=True)
m2f_ade20k_instance_train = dict(_delete_=True, type='ADE20KInstanceDataset', data_root=m2f_ade20k_root, ann_file='ade20k_instance_train.json',
                                 data_prefix=dict(img='images/training/'), pipeline=_instance_train,
                                 filter_cfg=dict(filter_empty_gt=True, min_size=32))
m2f_ade20k_instance_val = dict(_delete_=True, type='ADE20KInstanceDataset', data_root=m2f_ade20k_root, ann_file='ade20k_instance_val.json',
                               data_prefix=dict(img='images/validation/'), pipeline=_instance_test, test_mode=True)
# A copy for test_dataloader: merging a dict uses up its _delete_, so val and test cannot share one.
m2f_ade20k_instance_test = dict(m2f_ade20k_instance_val)
_instance_metric = dict(type='CocoMetric', ann_file=m2f_ade20k_root + 'ade20k_instance_val.json', metric=['bbox', 'segm'])
m2f_ade20k_panoptic_metrics = [
    dict(type='CocoPanopticMetric', ann_file=m2f_ade20k_root + 'ade20k_panoptic_val.json',
         seg_prefix=m2f_ade20k_root + 'ade20k_panoptic_val/'),
    _instance_metric,
]
m2f_ade20k_instance_metric = _instance_metric
# 160k iterations at batch 16, detectron2's WarmupPolyLR without warm-up (power 0.9)
m2f_160k_poly = [dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=160000, by_epoch=False)]
