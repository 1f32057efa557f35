# SidAE on CIFAR-10 as in "Self-Supervised Siamese Autoencoders": ResNet-18 (CIFAR stem),
# SimSiam's 3-layer projector and 2-layer predictor, decoder FC + five 3x3 stride-2
# transposed convs to 32x32, w = 0.5; SGD lr 0.03, momentum 0.9, weight decay 5e-4,
# cosine schedule, batch 512, 200 epochs. Views: ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8,
# RandomResizedCrop(0.2-1), RandomGrayscale p=0.2, horizontal flip p=0.5.
# Projector/predictor widths (2048 / 512) follow SimSiam's CIFAR setting; the paper does
# not restate them.
# w per experiment (the paper): 0.5 for the linear evaluations (this config, MNIST,
# Fashion-MNIST); STL-10: see sidae_r18_stl10.py (text 0.25 vs. Table 1 caption 0.5);
# 0.125 before fine-tuning: sidae_r18_<data>_w0.125_finetune.py.
# Checkpoints: the paper evaluates every 25 epochs (25, 50, ..., 200; its Figs. 3, 5-7),
# so every 25th epoch is saved and none deleted (SimSiam's base keeps only the last 3 of
# every 10th).
_base_ = 'mmpretrain::simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py'
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)

dataset_type = 'CIFAR10'
data_root = 'data/cifar10/'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    to_rgb=False)  # CIFAR arrays are RGB already
train_pipeline = [
    dict(type='SidAEViews', size=32, gaussian_blur=False),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=512, num_workers=8, drop_last=True,
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline))

model = dict(
    type='SidAE',
    backbone=dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='SyncBN'),
                  zero_init_residual=True),
    neck=dict(in_channels=512, hid_channels=2048, out_channels=2048),
    head=dict(predictor=dict(in_channels=2048, hid_channels=512, out_channels=2048)),
    decoder=dict(in_channels=2048, channels=(512, 256, 128, 64, 32), out_size=32),
    w=0.5)

lr = 0.03
optim_wrapper = dict(optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=5e-4))
max_epochs = 200
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0,
                        end=max_epochs)]
custom_hooks = [dict(type='SimSiamHook', priority='HIGH', fix_pred_lr=True, lr=lr)]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=25, max_keep_ckpts=-1, save_last=True))
auto_scale_lr = dict(base_batch_size=512)

linear_eval = dict(
    train=dict(type=dataset_type, data_root=data_root, split='train'),
    val=dict(type=dataset_type, data_root=data_root, split='test'),
    size=32)
