# Mask2Former, DiNAT-Large (kernel 11, ImageNet-22K), Cityscapes semantic segmentation, 512x1024
# crops, 90k iterations at batch 16, 100 queries: the release's
# mask2former/configs/cityscapes/semantic-segmentation/dinat/maskformer2_dinat_large_IN21k_384_bs16_90k.yaml
# on mmseg 1.x's Mask2Former (its Swin-L Cityscapes config's data, losses and schedule).
_base_ = ['mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-90k_cityscapes-512x1024.py',
          './_base_/models/mask2former_dinat_large.py']
model = dict(
    backbone={{_base_.dinat_large_k11}},
    decode_head=dict(in_channels={{_base_.dinat_large_channels}}, num_queries=100))
optim_wrapper = dict(paramwise_cfg={{_base_.m2f_paramwise_cfg}})
