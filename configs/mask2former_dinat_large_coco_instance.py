# Mask2Former, DiNAT-Large (kernel 11, ImageNet-22K), COCO instance segmentation, 100 epochs
# (737.5k iterations at batch 16), 1024x1024 large-scale jitter: the release's
# mask2former/configs/coco/instance-segmentation/dinat/maskformer2_dinat_large_IN21k_384_bs16_100ep.yaml
# on mmdet 3.x's Mask2Former.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', './_base_/models/mask2former_dinat_large.py']
model = dict(
    backbone={{_base_.dinat_large_k11}},
    panoptic_head=dict(in_channels={{_base_.dinat_large_channels}}, num_queries=200))
optim_wrapper = dict(paramwise_cfg={{_base_.m2f_paramwise_cfg}})
# mmdet's instance config keeps its panoptic base's seg folders, which CocoDataset never reads
# (and tools/train.py checks every path a config names): images only.
train_dataloader = dict(batch_size=1, dataset=dict(data_prefix=dict(_delete_=True, img='train2017/')))  # x 16 GPUs
val_dataloader = dict(dataset=dict(data_prefix=dict(_delete_=True, img='val2017/')))
test_dataloader = dict(dataset=dict(data_prefix=dict(_delete_=True, img='val2017/')))
max_iters = 737500
param_scheduler = dict(end=max_iters, milestones=[655556, 710184])
interval = 5000
train_cfg = dict(max_iters=max_iters, val_interval=interval,
                 dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
