# Mask2Former, DiNAT-Large (kernel 11, ImageNet-22K), ADE20K instance segmentation (100 classes),
# 640x640 crops, 160k iterations at batch 16, 200 queries: the release's
# mask2former/configs/ade20k/instance-segmentation/dinat/maskformer2_dinat_large_IN21k_384_bs16_160k.yaml
# on mmdet 3.x's Mask2Former and ADE20KInstanceDataset.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', './_base_/models/mask2former_dinat_large.py',
          './_base_/datasets/mask2former_ade20k_640.py']
num_things_classes = 100
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size={{_base_.m2f_ade20k_crop}}, img_pad_value=0, pad_mask=True, mask_pad_value=0,
             pad_seg=False)]),
    backbone={{_base_.dinat_large_k11}},
    panoptic_head=dict(in_channels={{_base_.dinat_large_channels}}, num_queries=200,
                       num_things_classes=num_things_classes, num_stuff_classes=0,
                       loss_cls=dict(class_weight=[1.0] * num_things_classes + [0.1])),
    panoptic_fusion_head=dict(num_things_classes=num_things_classes, num_stuff_classes=0))
train_dataloader = dict(dataset={{_base_.m2f_ade20k_instance_train}})
val_dataloader = dict(dataset={{_base_.m2f_ade20k_instance_val}})
test_dataloader = dict(dataset={{_base_.m2f_ade20k_instance_test}})
val_evaluator = {{_base_.m2f_ade20k_instance_metric}}
test_evaluator = val_evaluator
optim_wrapper = dict(paramwise_cfg={{_base_.m2f_paramwise_cfg}})
param_scheduler = {{_base_.m2f_160k_poly}}
train_cfg = dict(max_iters=160000, val_interval=5000, dynamic_intervals=None)
