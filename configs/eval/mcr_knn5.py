# MCR's 5-NN evaluation: each val image takes the majority label of its 5 nearest training
# images (all labels in the memory bank), by cosine similarity of the frozen backbone's
# average-pooled features. The dataset is the pre-training config's (its linear_eval, else
# its dataset's splits): CIFAR-10 / CIFAR-100 / STL-10 / Tiny-ImageNet for the ResNet-18
# MCR configs (configs/mcr/*_r18_*.py), ImageNet-1k for the ResNet-50 ones.
#
#   python tools/linear_eval.py configs/mcr/mcr_simclr_r18_cifar10.py \
#       work_dirs/mcr_simclr_r18_cifar10/epoch_200.pth --protocol-config configs/eval/mcr_knn5.py
#
# sslreg's choices where "5-NN" says no more: cosine similarity (metric='euclidean': raw
# features, as W-MSE's eval_knn); one vote per neighbour, a tie goes to the smallest label
# (scikit-learn's and W-MSE's rule); vote='weighted' gives InstDisc / DINO's exp(sim / 0.07)
# votes. On the digits: configs/mcr/mcr_simclr_r18_digits.py with this file as it is.
protocol = dict(
    name='mcr_knn5',
    paper='MCR: 5-NN classification on frozen features',
    dataset='CIFAR-10 / CIFAR-100 / STL-10 / Tiny-ImageNet (the pre-training config\'s)',
    mode='knn',
    labels='100%',
    features=dict(type='pooled'),
    knn=dict(k=5, metric='cosine', vote='majority', temperature=0.07))
