"""Data transforms of sslreg (registered in MMEngine's root ``TRANSFORMS``) and data sets
(root ``DATASETS``).

* :class:`GeometricGroupViews` (``transforms.py``) -- SER's invertible views of one
  image, with the group elements that made them;
* :class:`SidAEViews` (``sidae_views.py``) -- SidAE's two noisy views and the clean
  image (:func:`paper_view_pipeline`: the paper's augmentation);
* :class:`SVHN` (``svhn.py``) -- the official ``{train,test,extra}_32x32.mat`` files;
* :class:`LongTailDataset` (``long_tail.py``) -- CIFAR-10-LT / CIFAR-100-LT style
  exponentially imbalanced subsets (LDAM's, ``imbalance_factor`` 10/50/100);
* :class:`CIFAR100Coarse`, :class:`UncheckedCIFAR10`, :class:`UncheckedCIFAR100`
  (``cifar.py``) -- CIFAR-100's 20 superclasses; mmpretrain's CIFAR readers without md5
  checks, for files written in the layout;
* ``layouts.py`` -- writers of those on-disk layouts (:func:`write_cifar10`,
  :func:`write_cifar100`, :func:`write_svhn`).
"""
from .cifar import (CIFAR100_COARSE_CATEGORIES, CIFAR100_FINE_TO_COARSE, CIFAR100Coarse,
                    UncheckedCIFAR10, UncheckedCIFAR100)
from .layouts import write_cifar10, write_cifar100, write_svhn
from .long_tail import LongTailDataset, long_tail_counts
from .sidae_views import SidAEViews, paper_view_pipeline
from .svhn import SVHN
from .transforms import EQUIV_CROPS, GeometricGroupViews

__all__ = ['GeometricGroupViews', 'EQUIV_CROPS', 'SidAEViews', 'paper_view_pipeline', 'SVHN',
           'LongTailDataset', 'long_tail_counts', 'CIFAR100Coarse', 'UncheckedCIFAR10',
           'UncheckedCIFAR100', 'CIFAR100_COARSE_CATEGORIES', 'CIFAR100_FINE_TO_COARSE',
           'write_cifar10', 'write_cifar100', 'write_svhn']
