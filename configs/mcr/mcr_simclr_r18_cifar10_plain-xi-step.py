# mcr_simclr_r18_cifar10.py with the paper's update of xi: the same plain gradient step r
# as theta (MCR Eq. 9; Algorithm 1, line 12), instead of sslreg's separate Adam at 1e-3.
# "Plain": SGD without momentum or weight decay, at the base optimizer's learning rate and
# schedule (the base itself keeps SGD with momentum 0.9, as the CIFAR recipe needs; the
# paper's Algorithm 1 writes theta's step plain too).
_base_ = ['./mcr_simclr_r18_cifar10.py']

optim_wrapper = dict(
    meta=dict(_delete_=True, type='OptimWrapper',
              optimizer=dict(type='SGD', lr=0.3, momentum=0.0, weight_decay=0.0)))
param_scheduler = dict(meta={{_base_.param_scheduler.base}})
