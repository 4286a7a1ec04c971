# Mask R-CNN, DiNAT_s-Small backbone, FPN, 3x multi-scale + crop schedule, COCO 2017.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, detection/configs/dinat_s).
_base_ = [
    './_base_/models/mask_rcnn_dinat_fpn.py', './_base_/datasets/coco_instance_ms_crop.py',
    './_base_/schedules/schedule_3x_adamw.py', './_base_/default_runtime_det.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='DiNAT_s',
        arch='small',
        drop_path_rate=0.35,
        kernel_size=7,
        dilations=[[1, 28], [1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3]],
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_s_small_in1k_224.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))
