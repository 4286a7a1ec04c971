# ImageNet-1K at 384 px, as the release fine-tunes and tests its 384 models: the 224 pipelines with
# 384 crops, and crop_pct 1.0 (the test image's short side resized to 384, then centre-cropped).
_base_ = ['./imagenet_224.py']
img_size = 384
crop_pct = 1.0
train_pipeline = _base_.train_pipeline
train_pipeline[1].scale = img_size
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = int(img_size / crop_pct)
test_pipeline[2].crop_size = img_size
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
