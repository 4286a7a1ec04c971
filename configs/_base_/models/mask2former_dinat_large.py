# What the Mask2Former DiNAT-L configs share (the DiNAT release, mask2former/configs/**/dinat/*.yaml):
# DiNAT-L with kernel 11 and the same dilations in every task, drop path 0.3, ImageNet-22K weights
# with rpb interpolated to 11x11; the backbone trained at 0.1x the learning rate, no weight decay on
# its norms and rpb. The configs that inherit this also inherit mmdet's / mmseg's own Mask2Former
# config (the `mmdet::` / `mmseg::` bases), so import dinat_mm and keep the RNG-state hook here.
custom_imports = dict(imports=['dinat_mm'], allow_failed_imports=False)
custom_hooks = [dict(type='RNGStateHook')]
dinat_large_k11 = dict(
    _delete_=True,
    type='DiNAT',
    arch='large',
    kernel_size=11,
    dilations=[[1, 14, 1], [1, 4, 1, 7], [1, 2, 1, 3] * 4 + [1, 3], [1, 1, 1, 1, 1]],
    drop_path_rate=0.3,
    out_indices=(0, 1, 2, 3),
    init_cfg=dict(type='Pretrained',
                  checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet22k/dinat_large_in22k_224_11x11interp.pth'))
dinat_large_channels = [192, 384, 768, 1536]
backbone_multi = dict(lr_mult=0.1, decay_mult=0.0)
query_multi = dict(lr_mult=1.0, decay_mult=0.0)
# mmengine applies the longest key contained in a parameter's name, so the backbone's norms and rpb
# get keys longer than 'backbone' (as mmdet's Swin Mask2Former configs do for theirs)
_dinat_large_depths = [3, 4, 18, 5]
m2f_custom_keys = {
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'backbone.patch_embed.norm': backbone_multi,
    'backbone.norm': backbone_multi,  # the output norms norm0..norm3
    'query_embed': query_multi,
    'query_feat': query_multi,
    'level_embed': query_multi,
}
m2f_custom_keys.update({f'backbone.levels.{i}.blocks.{j}.{part}': backbone_multi
                        for i, depth in enumerate(_dinat_large_depths) for j in range(depth) for part in ('norm', 'attn.rpb')})
m2f_custom_keys.update({f'backbone.levels.{i}.downsample.norm': backbone_multi for i in range(3)})
m2f_paramwise_cfg = dict(_delete_=True, custom_keys=m2f_custom_keys, norm_decay_mult=0.0)
