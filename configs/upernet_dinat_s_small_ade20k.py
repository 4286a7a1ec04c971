# UPerNet, DiNAT_s-Small backbone, ADE20K 512x512, 160k iterations.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, segmentation/configs/dinat_s).
_base_ = [
    './_base_/models/upernet_dinat.py', './_base_/datasets/ade20k_512.py',
    './_base_/schedules/schedule_160k_adamw.py', './_base_/default_runtime_seg.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='DiNAT_s',
        arch='small',
        drop_path_rate=0.3,
        kernel_size=7,
        dilations=[[1, 16], [1, 8], [1, 2, 1, 3, 1, 4] * 3, [1, 2]],
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_s_small_in1k_224.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
