# Mask R-CNN, NAT-Mini backbone, FPN, 3x multi-scale + crop schedule, COCO 2017.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, detection/configs/nat).
_base_ = [
    './_base_/models/mask_rcnn_dinat_fpn.py', './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_3x_adamw.py', './_base_/default_runtime_det.py'
]
model = dict(
    backbone=dict(
        type='NAT',
        arch='mini',
        drop_path_rate=0.2,
        kernel_size=7,
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_mini.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
