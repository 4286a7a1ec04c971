# UPerNet, DiNAT_s-Large backbone, ADE20K 640x640, 160k iterations.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, segmentation/configs/dinat_s).
_base_ = [
    './_base_/models/upernet_dinat.py', './_base_/datasets/ade20k_640.py',
    './_base_/schedules/schedule_160k_adamw.py', './_base_/default_runtime_seg.py'
]
crop_size = (640, 640)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='DiNAT_s',
        arch='large',
        drop_path_rate=0.3,
        kernel_size=7,
        dilations=[[1, 20], [1, 10], [1, 2, 1, 3, 1, 4, 1, 5] * 2 + [1, 5], [1, 2]],
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet22k/dinat_s_large_in22k_224.pth')),
    decode_head=dict(in_channels=[192, 384, 768, 1536], num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150))
