# VCReg's fixed-feature transfer probe (Table 1, App. C.1, after Kornblith et al. 2019): an
# L2-regularized multinomial logistic regression on the frozen backbone's features, fit by
# L-BFGS, its strength picked on a validation split, then refit on train + val and scored on
# test (tools/transfer_eval.py, sslreg/evaluation/transfer.py).
#
#   objective: 1/n * sum_i CE(W x_i + b, y_i) + lambda / 2 * ||W||_F^2  (bias not penalized)
#              = scikit-learn's LogisticRegression(C=1 / (n * lambda)) up to the factor C * n
#   lambda:    45 values log-spaced in [1e-5, 1e5], best top-1 on val (ties: the largest)
#   val:       the dataset's own split, else 20% of each class of the training split (seed 0)
#   images:    short side resized to 224 (bicubic, Pillow), centre crop 224, no augmentation
#   features:  the backbone's last output, average-pooled (2048-d for a ResNet-50)
# A dataset config inherits this and names its train / val / test datasets.
protocol = dict(
    mode='logreg',
    features=dict(type='pooled'),
    lambdas=dict(low=1e-5, high=1e5, num=45),
    val_fraction=0.2,
    seed=0,
    max_iter=1000,
    tol=1e-6)
transfer = dict(
    size=224,
    resize_short=224,
    interpolation='bicubic')
