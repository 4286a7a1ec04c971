# Mask R-CNN, NAT-Small backbone, FPN, 3x multi-scale + crop schedule, COCO 2017.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, detection/configs/nat).
_base_ = [
    './_base_/models/mask_rcnn_dinat_fpn.py', './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_3x_adamw.py', './_base_/default_runtime_det.py'
]
model = dict(
    backbone=dict(
        type='NAT',
        arch='small',
        drop_path_rate=0.35,
        kernel_size=7,
        layer_scale=1e-05,  # the release's NAT-Small configs; NAT-Base's preset has it
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_small.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
