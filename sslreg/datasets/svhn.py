"""``SVHN``: the Street View House Numbers cropped digits (format 2), which mmpretrain lacks.

Reads the official files (http://ufldl.stanford.edu/housenumbers/) from ``data_root``::

    <data_root>/train_32x32.mat   73,257 digits
    <data_root>/test_32x32.mat    26,032
    <data_root>/extra_32x32.mat   531,131 (split='extra', optional)

each a MATLAB file with ``'X'``: uint8 (32, 32, 3, N), image i = ``X[:, :, :, i]`` (H, W,
RGB), and ``'y'``: (N, 1), labels 1..10 where **10 is the digit 0**; here 10 -> 0, so
label d is digit d and the classes are ``'0'..'9'``. Items: ``img`` (32, 32, 3) uint8
HWC RGB, ``gt_label``. As mmpretrain's ``CIFAR10``, images come in memory, so the
pipeline starts without ``LoadImageFromFile``. No md5 check, no download.

Example::

    train_dataloader = dict(dataset=dict(type='SVHN', data_root='data/svhn', split='train',
                                         pipeline=[dict(type='RandomCrop', crop_size=32,
                                                        padding=4),
                                                   dict(type='PackInputs')]))

Registered in MMEngine's root ``DATASETS`` (found from mmpretrain's scope by the parent
lookup). ``sslreg.datasets.layouts.write_svhn`` writes the same layout.
"""
import io
from typing import Optional

import numpy as np
from mmengine.fileio import LocalBackend, exists, get_file_backend, join_path
from mmengine.registry import DATASETS
from mmpretrain.datasets import BaseDataset

__all__ = ['SVHN', 'SVHN_SPLITS']

SVHN_SPLITS = ('train', 'test', 'extra')


@DATASETS.register_module()
class SVHN(BaseDataset):
    """SVHN cropped digits from ``<data_root>/<split>_32x32.mat``.

    Args:
        data_root: the directory holding the .mat files.
        split: ``'train'``, ``'test'`` or ``'extra'``.
        metainfo, data_prefix, test_mode, **kwargs: as mmpretrain's ``CIFAR10``
            (``pipeline``, ``indices``, ...).
    """
    METAINFO = {'classes': tuple(str(d) for d in range(10))}

    def __init__(self, data_root: str = '', split: str = 'train',
                 metainfo: Optional[dict] = None, data_prefix: str = '',
                 test_mode: bool = False, **kwargs):
        if split not in SVHN_SPLITS:
            raise ValueError(f'SVHN split must be one of {SVHN_SPLITS}, got {split!r}')
        if not data_root and not data_prefix:
            raise ValueError('SVHN needs data_root: the directory of {train,test,extra}_32x32.mat')
        self.split = split
        super().__init__(ann_file='', metainfo=metainfo, data_root=data_root,
                         data_prefix=dict(root=data_prefix), test_mode=test_mode, **kwargs)

    @property
    def mat_file(self) -> str:
        return join_path(self.data_prefix['root'], f'{self.split}_32x32.mat')

    def load_data_list(self):
        from scipy.io import loadmat  # scipy only when a split is read
        path = self.mat_file
        if not exists(path):
            raise FileNotFoundError(
                f'SVHN split {self.split!r}: {path} not found. Put the official cropped-digit '
                f'file {self.split}_32x32.mat (http://ufldl.stanford.edu/housenumbers/) '
                f'directly in data_root={self.data_root!r}.')
        backend = get_file_backend(path, enable_singleton=True)
        mat = loadmat(path if isinstance(backend, LocalBackend) else io.BytesIO(backend.get(path)),
                      variable_names=('X', 'y'))
        images, labels = mat.get('X'), mat.get('y')
        if images is None or labels is None or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
            raise ValueError(f'{path}: expected X of shape (32, 32, 3, N) and y of shape (N, 1), '
                             f'got X {getattr(images, "shape", None)}, '
                             f'y {getattr(labels, "shape", None)}')
        labels = labels.astype(np.int64).reshape(-1)
        if len(labels) != images.shape[3] or not np.isin(labels, np.arange(1, 11)).all():
            found = np.unique(labels).tolist()[:20]
            raise ValueError(f'{path}: expected {images.shape[3]} labels in 1..10 (10 = digit 0), '
                             f'got {len(labels)}, values {found}')
        labels[labels == 10] = 0
        images = np.ascontiguousarray(images.transpose(3, 0, 1, 2))  # N, H, W, C
        return [{'img': img, 'gt_label': int(label)} for img, label in zip(images, labels)]

    def extra_repr(self):
        return [f'Split: \t{self.split}', f'File: \t{self.mat_file}']
