# Cascade Mask R-CNN, NAT-Base backbone, FPN, 3x multi-scale + crop schedule, COCO 2017.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, detection/configs/nat).
_base_ = [
    './_base_/models/cascade_mask_rcnn_dinat_fpn.py', './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_3x_adamw.py', './_base_/default_runtime_det.py'
]
model = dict(
    backbone=dict(
        type='NAT',
        arch='base',
        drop_path_rate=0.5,
        kernel_size=7,
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_base.pth')),
    neck=dict(in_channels=[128, 256, 512, 1024]))
