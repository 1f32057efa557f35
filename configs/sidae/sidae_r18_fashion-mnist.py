# SidAE on Fashion-MNIST: the MNIST recipe (gray -> 3 channels, 32x32, Gaussian blur).
_base_ = ['./sidae_r18_mnist.py']

dataset_type = 'FashionMNIST'
data_root = 'data/fashion-mnist/'
data_preprocessor = dict(mean=[72.94] * 3, std=[90.02] * 3)
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
linear_eval = dict(
    train=dict(type=dataset_type, data_root=data_root, split='train'),
    val=dict(type=dataset_type, data_root=data_root, split='test'),
    size=32)
