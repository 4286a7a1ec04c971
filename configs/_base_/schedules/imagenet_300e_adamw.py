# The release's ImageNet-1K recipe (classification/configs/*.yml with its train.py defaults), for
# 1024 images per step (8 GPUs x 128): AdamW (lr 1e-3, weight decay 0.05, eps 1e-8), gradient
# clipping at norm 5, 20 warm-up epochs from 1e-6, cosine to 5e-6 over 300 epochs, then 10
# cool-down epochs at 5e-6. No weight decay on norms, biases, layer scales or rpb tables (timm
# exempts every 1-D parameter and the models' no_weight_decay_keywords, 'rpb').
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0, custom_keys={'.rpb': dict(decay_mult=0.0)}))
warmup_epochs = 20
epochs = 300
cooldown_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=warmup_epochs, end=epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=epochs + cooldown_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
