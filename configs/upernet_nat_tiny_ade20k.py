# UPerNet, NAT-Tiny backbone, ADE20K 512x512, 160k iterations.
# Values from the DiNAT release (SHI-Labs/Neighborhood-Attention-Transformer, segmentation/configs/nat).
_base_ = [
    './_base_/models/upernet_dinat.py', './_base_/datasets/ade20k_512.py',
    './_base_/schedules/schedule_160k_adamw.py', './_base_/default_runtime_seg.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='NAT',
        arch='tiny',
        drop_path_rate=0.3,
        kernel_size=7,
        init_cfg=dict(type='Pretrained', checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_tiny.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
