# SidAE on MNIST (28x28 gray -> 3 channels, 32x32), the CIFAR-10 recipe plus the paper's
# Gaussian blur (sigma 0.1-2, p=0.5) for MNIST-like data.
_base_ = ['./sidae_r18_cifar10.py']

dataset_type = 'MNIST'
data_root = 'data/mnist/'
data_preprocessor = dict(mean=[33.32] * 3, std=[78.57] * 3, to_rgb=False)
train_pipeline = [
    dict(type='SidAEViews', size=32, gaussian_blur=True),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root,
                                     pipeline=train_pipeline))
linear_eval = dict(
    train=dict(type=dataset_type, data_root=data_root, split='train'),
    val=dict(type=dataset_type, data_root=data_root, split='test'),
    size=32)
