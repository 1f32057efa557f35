# SidAE's linear evaluation with 10% of the labels ("Self-Supervised Siamese Autoencoders";
# ResNet-18 on CIFAR-10 / STL-10 / MNIST / Fashion-MNIST: configs/sidae/*.py). The dataset
# is the pre-training config's linear_eval (train -> test split).
#
#   python tools/linear_eval.py configs/sidae/sidae_r18_cifar10.py \
#       work_dirs/sidae_r18_cifar10/epoch_200.pth \
#       --protocol-config configs/eval/sidae_labels_10pct.py
#
# A linear classifier on the frozen, average-pooled ResNet-18 features of a class-balanced
# 10% of the training labels (max(1, round(10% x n_c)) per class, drawn from the seed),
# 50 epochs, SGD lr 0.05, momentum 0.9, batch 256, cosine, no warm-up, standardized features
# (sslreg's choices where the paper is not specific). --finetune (or
# --protocol-options protocol.mode=finetune) trains the backbone too, the paper's fine-tuning
# experiments (their SidAE w = 0.125 is a pre-training setting, in configs/sidae).
# On the digits: configs/sidae/sidae_r18_digits.py with this file as it is.
_base_ = ['./_base_/frozen_linear_50e.py']
protocol = dict(
    name='sidae_labels_10pct',
    paper='SidAE: linear evaluation, 10% of the labels',
    dataset='CIFAR-10 / STL-10 / MNIST / Fashion-MNIST (the pre-training config\'s)',
    labels='10%')
