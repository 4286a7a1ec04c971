# Mask2Former, DiNAT-Large (kernel 11, ImageNet-22K), ADE20K semantic segmentation, 640x640 crops,
# 160k iterations at batch 16, 100 queries: the release's
# mask2former/configs/ade20k/semantic-segmentation/dinat/maskformer2_dinat_large_IN21k_384_bs16_160k.yaml
# on mmseg 1.x's Mask2Former (its Swin-L ADE20K config's data, losses and schedule).
_base_ = ['mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py',
          './_base_/models/mask2former_dinat_large.py']
model = dict(
    backbone={{_base_.dinat_large_k11}},
    decode_head=dict(in_channels={{_base_.dinat_large_channels}}, num_queries=100))
optim_wrapper = dict(paramwise_cfg={{_base_.m2f_paramwise_cfg}})
