r"""``LongTailDataset``: an exponentially imbalanced ("long-tailed") subset of a data set.

CIFAR-10-LT and CIFAR-100-LT (VCReg Table 3, App. C.4) as Cao et al. 2019 ("Learning
Imbalanced Datasets with Label-Distribution-Aware Margin Loss", LDAM; their
``IMBALANCECIFAR10``/``100``) make them. With C classes, imbalance factor
:math:`\rho = n_{max} / n_{min}` (10, 50, 100 in the papers) and :math:`n_{max}` the
images of the largest class (5,000 on CIFAR-10, 500 on CIFAR-100), class c keeps

.. math::  n_c = \lfloor n_{max} \cdot \rho^{-c/(C-1)} \rfloor,  \quad c = 0..C-1

images (capped at the images it has): class 0 keeps all, class C-1 keeps
:math:`n_{max}/\rho` (CIFAR-10, rho=100: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83,
50; 12,406 in all). Which ones: ``rng = np.random.RandomState(seed)``; for c = 0..C-1
the indices of class c (in data set order) are shuffled with ``rng.shuffle`` and the first
n_c kept -- LDAM's ``np.random.seed(rand_number)`` + ``np.random.shuffle`` per class, so
with ``seed=0`` (LDAM's default) and mmpretrain's CIFAR order (data_batch_1..5, as
torchvision's) the subset is LDAM's. Indices are listed class by class, as LDAM's arrays.
Only training sets are made long-tailed; the papers test on the balanced test split.

Used like MMEngine's ``ClassBalancedDataset``::

    train_dataloader = dict(dataset=dict(
        type='LongTailDataset', imbalance_factor=100, seed=0,
        dataset=dict(type='CIFAR10', data_root='data/cifar10', split='train',
                     pipeline=train_pipeline)))

Registered in MMEngine's root ``DATASETS``; the inner dataset is built in the config's
default scope (``CIFAR10`` is mmpretrain's).
"""
import copy
import logging
from typing import List, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset, force_full_init
from mmengine.logging import print_log
from mmengine.registry import DATASETS

__all__ = ['LongTailDataset', 'long_tail_counts']


def long_tail_counts(n_max: int, num_classes: int, imbalance_factor: float) -> List[int]:
    r""":math:`n_c = \lfloor n_{max} \rho^{-c/(C-1)} \rfloor` for c = 0..C-1, computed as
    LDAM's ``int(img_max * imb_factor ** (c / (C - 1.0)))`` with ``imb_factor = 1/rho``."""
    if imbalance_factor < 1:
        raise ValueError(f'imbalance_factor (n_max / n_min) must be >= 1, got {imbalance_factor}')
    if num_classes < 2:
        raise ValueError(f'a long tail needs >= 2 classes, got {num_classes}')
    mu = 1.0 / imbalance_factor
    return [int(n_max * mu ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def _labels(dataset) -> np.ndarray:
    if hasattr(dataset, 'get_gt_labels'):
        return np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    return np.array([int(dataset.get_data_info(i)['gt_label']) for i in range(len(dataset))],
                    dtype=np.int64)


@DATASETS.register_module()
class LongTailDataset:
    """The long-tailed subset of ``dataset`` (module docstring: the counts and the choice).

    Args:
        dataset: a single-label dataset (config or instance) whose items have
            ``gt_label``; its ``metainfo['classes']`` gives C (else the largest label + 1).
        imbalance_factor: rho = n_max / n_min, >= 1 (1 keeps every image).
        seed: seed of the per-class shuffles (0: LDAM's).
        lazy_init: defer the selection to ``full_init()`` (as MMEngine's wrappers).

    Attributes (after ``full_init``): ``indices`` (into ``dataset``), ``num_per_class``.
    """

    def __init__(self, dataset: Union[BaseDataset, dict], imbalance_factor: float,
                 seed: int = 0, lazy_init: bool = False):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if not hasattr(dataset, 'get_data_info'):
            raise TypeError(f'dataset must be a config or a BaseDataset, got {type(dataset)}')
        if imbalance_factor < 1:
            raise ValueError(f'imbalance_factor (n_max / n_min) must be >= 1, '
                             f'got {imbalance_factor}')
        self.dataset = dataset
        self.imbalance_factor = float(imbalance_factor)
        self.seed = int(seed)
        self._metainfo = dataset.metainfo
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self._metainfo)

    def full_init(self):
        if self._fully_initialized:
            return
        self.dataset.full_init()
        labels = _labels(self.dataset)
        classes = self._metainfo.get('classes')
        num_classes = len(classes) if classes is not None else int(labels.max()) + 1
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'labels must lie in 0..{num_classes - 1} (the classes), got '
                             f'{labels.min()}..{labels.max()}')
        n_max = int(np.bincount(labels, minlength=num_classes).max()) if len(labels) else 0
        wanted = long_tail_counts(n_max, num_classes, self.imbalance_factor)
        rng = np.random.RandomState(self.seed)
        indices, counts = [], []
        for c in range(num_classes):
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            keep = idx[:wanted[c]]
            indices.extend(int(i) for i in keep)
            counts.append(len(keep))
        self.indices: List[int] = indices
        self._gt_labels = labels[np.asarray(indices, dtype=np.int64)]
        self.num_per_class: Sequence[int] = tuple(counts)
        self._fully_initialized = True
        print_log(f'LongTailDataset: imbalance factor {self.imbalance_factor:g}, seed '
                  f'{self.seed}: {len(indices)} of {len(labels)} images, per class '
                  f'{list(counts)}', logger='current', level=logging.INFO)

    @force_full_init
    def _get_ori_dataset_idx(self, idx: int) -> int:
        return self.indices[idx]

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(self._get_ori_dataset_idx(idx))

    @force_full_init
    def get_cat_ids(self, idx: int) -> List[int]:
        return [int(self.get_data_info(idx)['gt_label'])]

    @force_full_init
    def get_gt_labels(self) -> np.ndarray:
        return self._gt_labels.copy()

    def __getitem__(self, idx: int):
        if not self._fully_initialized:
            print_log('Please call `full_init` method manually to accelerate the speed.',
                      logger='current', level=logging.WARNING)
            self.full_init()
        return self.dataset[self._get_ori_dataset_idx(idx)]

    @force_full_init
    def __len__(self) -> int:
        return len(self.indices)

    def get_subset_(self, indices):
        raise NotImplementedError('LongTailDataset has no get_subset_: set `indices` of the '
                                  'wrapped dataset instead')

    def get_subset(self, indices):
        raise NotImplementedError('LongTailDataset has no get_subset: set `indices` of the '
                                  'wrapped dataset instead')
