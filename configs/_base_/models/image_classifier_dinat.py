# ImageNet classifier as the DiNAT release builds it: the backbone's last level through its norm
# (out_indices=(3,) gives norm3), global average pooling, a linear head.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='DiNAT', arch='tiny', out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        # the release's initialisation of the head (timm's trunc_normal_, std 0.02, zero bias)
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    # the release trains with timm's Mixup (alpha 0.8) and CutMix (alpha 1.0), switching between them
    # with probability 0.5 per batch
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
