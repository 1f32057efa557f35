# mcr_semi_1pct.py fine-tuned end to end, as SimCLR / BYOL evaluate semi-supervised
# learning: backbone + linear classifier on the 1% subset, 60 epochs (SimCLR's 60 for
# 1%), SGD lr 0.05 (both, backbone_lr_mult=1), momentum 0.9, no weight decay, cosine, no
# warm-up. sslreg's simplifications: no Nesterov momentum and no crop/flip augmentation
# (the subset's 224 centre crops are held in memory as uint8).
_base_ = './mcr_semi_1pct.py'
protocol = dict(name='mcr_semi_1pct_finetune', mode='finetune', epochs=60,
                backbone_lr_mult=1.0)
