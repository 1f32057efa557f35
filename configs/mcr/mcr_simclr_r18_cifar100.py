# MCR on SimCLR, ResNet-18, CIFAR-100: the CIFAR-10 recipe (mcr_simclr_r18_cifar10.py).
_base_ = ['./mcr_simclr_r18_cifar10.py']

dataset_type = 'CIFAR100'
data_root = 'data/cifar100/'
data_preprocessor = dict(mean=[129.304, 124.070, 112.434], std=[68.170, 65.392, 70.418])
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
linear_eval = dict(
    train=dict(type=dataset_type, data_root=data_root, split='train'),
    val=dict(type=dataset_type, data_root=data_root, split='test'),
    size=32)
