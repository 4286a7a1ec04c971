# The release's ImageNet-22K -> 1K fine-tuning (dinat_large*.yml, dinat_s_large*.yml): AdamW at
# lr 5e-5 for 512 images per step (8 GPUs x 64), no warm-up, 30 epochs, float32; each config sets
# its weight decay, its batch of 64 per GPU and no Mixup/CutMix. The ymls' "sched: linear" names no scheduler of the release's
# train.py (cosine, tanh, step, multistep, plateau, poly), which then keeps the rate constant.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=1e-4, eps=1e-8, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0, custom_keys={'.rpb': dict(decay_mult=0.0)}))
param_scheduler = []
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=512)
