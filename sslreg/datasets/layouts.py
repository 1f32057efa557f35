"""Writers of the on-disk layouts that ``CIFAR10``/``CIFAR100`` (mmpretrain),
:class:`~sslreg.datasets.CIFAR100Coarse` and :class:`~sslreg.datasets.SVHN` read.

Images in and out are uint8 ``(N, 32, 32, 3)`` HWC RGB; labels are ints. The files are
those of the official archives, field for field:

* :func:`write_cifar10`: ``<root>/cifar-10-batches-py/`` ``data_batch_1..5`` and
  ``test_batch`` (pickled dicts ``batch_label``, ``labels``, ``data`` -- uint8
  ``(n, 3072)``, each row the 1024 red, 1024 green, 1024 blue values of one image, rows
  of 32 --, ``filenames``) and ``batches.meta`` (``label_names``,
  ``num_cases_per_batch``, ``num_vis``);
* :func:`write_cifar100`: ``<root>/cifar-100-python/`` ``train``, ``test`` (``fine_labels``
  and ``coarse_labels`` instead of ``labels``) and ``meta`` (``fine_label_names``,
  ``coarse_label_names``);
* :func:`write_svhn`: ``<root>/<split>_32x32.mat`` with ``X`` uint8 ``(32, 32, 3, N)`` and
  ``y`` uint8 ``(N, 1)``, the digit 0 written as label 10.

Pickles use protocol 2 with str keys (read back with ``encoding='latin1'`` as the
official Python-2 pickles are); the .mat header's creation time is fixed, so the same
arrays give byte-identical files. The md5 sums are not the official ones: read the
CIFAR files with ``UncheckedCIFAR10``/``UncheckedCIFAR100`` or
``CIFAR100Coarse(check_md5=False)``.

This module imports nothing of sslreg or OpenMMLab (numpy, pickle; scipy to write .mat):
``tools/data/make_small_datasets.py`` loads it by its path.
"""
import io
import pickle
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ['write_cifar10', 'write_cifar100', 'write_svhn', 'cifar_rows', 'CIFAR10_FOLDER',
           'CIFAR100_FOLDER', 'CIFAR100_COARSE_CATEGORIES', 'CIFAR100_FINE_TO_COARSE']

CIFAR10_FOLDER = 'cifar-10-batches-py'
CIFAR100_FOLDER = 'cifar-100-python'
_MAT_HEADER = b'MATLAB 5.0 MAT-file, written by sslreg.datasets.layouts'

#: CIFAR-100's ``coarse_label_names`` (its ``meta`` file), in label order.
CIFAR100_COARSE_CATEGORIES = (
    'aquatic_mammals', 'fish', 'flowers', 'food_containers', 'fruit_and_vegetables',
    'household_electrical_devices', 'household_furniture', 'insects', 'large_carnivores',
    'large_man-made_outdoor_things', 'large_natural_outdoor_scenes',
    'large_omnivores_and_herbivores', 'medium_mammals', 'non-insect_invertebrates', 'people',
    'reptiles', 'small_mammals', 'trees', 'vehicles_1', 'vehicles_2')

#: The superclass of each fine label (index = fine label, in mmpretrain's
#: ``CIFAR100_CATEGORIES`` order): what the official pickles' ``coarse_labels`` hold.
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13)


def _images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f'images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}')
    return images


def _labels(labels, n: int, num_classes: int, what: str = 'labels') -> list:
    labels = [int(v) for v in labels]
    if len(labels) != n or any(not 0 <= v < num_classes for v in labels):
        raise ValueError(f'{what}: expected {n} ints in 0..{num_classes - 1}, got {len(labels)} '
                         f'in {min(labels, default=None)}..{max(labels, default=None)}')
    return labels


def cifar_rows(images) -> np.ndarray:
    """uint8 (N, 32, 32, 3) HWC -> CIFAR's (N, 3072) rows (channel-major: R, G, B planes)."""
    images = _images(images)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def _dump(obj, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar10(root, train: Tuple, test: Tuple, label_names: Optional[Sequence[str]] = None,
                  num_batches: int = 5) -> Path:
    """``train``/``test`` = (images, labels 0..9) -> ``<root>/cifar-10-batches-py``.

    The training images are cut into ``num_batches`` (5, as CIFAR-10) consecutive
    batches of near-equal size, data_batch_1 first; returns the folder."""
    folder = Path(root) / CIFAR10_FOLDER
    names = list(label_names or [f'class_{c}' for c in range(10)])
    if len(names) != 10:
        raise ValueError(f'CIFAR-10 has 10 label names, got {len(names)}')
    for split, (images, labels) in (('train', train), ('test', test)):
        rows = cifar_rows(images)
        labels = _labels(labels, len(rows), 10, f'{split} labels')
        parts = (np.array_split(np.arange(len(rows)), num_batches) if split == 'train'
                 else [np.arange(len(rows))])
        for k, idx in enumerate(parts, start=1):
            name = f'data_batch_{k}' if split == 'train' else 'test_batch'
            what = (f'training batch {k} of {num_batches}' if split == 'train'
                    else 'testing batch 1 of 1')
            _dump({'batch_label': what, 'labels': [labels[i] for i in idx], 'data': rows[idx],
                   'filenames': [f'{split}_{i:05d}.png' for i in idx]}, folder / name)
    _dump({'num_cases_per_batch': int(np.ceil(len(train[1]) / num_batches)),
           'label_names': names, 'num_vis': 3072}, folder / 'batches.meta')
    return folder


def write_cifar100(root, train: Tuple, test: Tuple,
                   fine_label_names: Optional[Sequence[str]] = None,
                   coarse_label_names: Optional[Sequence[str]] = None) -> Path:
    """``train``/``test`` = (images, fine labels 0..99, coarse labels 0..19) ->
    ``<root>/cifar-100-python/{train,test,meta}``; returns the folder."""
    folder = Path(root) / CIFAR100_FOLDER
    fine_names = list(fine_label_names or [f'fine_{c}' for c in range(100)])
    coarse_names = list(coarse_label_names or [f'coarse_{c}' for c in range(20)])
    if len(fine_names) != 100 or len(coarse_names) != 20:
        raise ValueError(f'CIFAR-100 has 100 fine and 20 coarse label names, got '
                         f'{len(fine_names)} and {len(coarse_names)}')
    for split, (images, fine, coarse) in (('train', train), ('test', test)):
        rows = cifar_rows(images)
        _dump({'filenames': [f'{split}_{i:05d}.png' for i in range(len(rows))],
               'batch_label': f'{"training" if split == "train" else "testing"} batch 1 of 1',
               'fine_labels': _labels(fine, len(rows), 100, f'{split} fine labels'),
               'coarse_labels': _labels(coarse, len(rows), 20, f'{split} coarse labels'),
               'data': rows}, folder / split)
    _dump({'fine_label_names': fine_names, 'coarse_label_names': coarse_names}, folder / 'meta')
    return folder


def write_svhn(root, split: str, images, labels) -> Path:
    """(images, digits 0..9) -> ``<root>/<split>_32x32.mat`` in the official layout (the
    digit 0 stored as 10); returns the file."""
    from scipy.io import savemat  # scipy only when a .mat file is written
    images = _images(images)
    digits = np.array(_labels(labels, len(images), 10), dtype=np.uint8)
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    buf = io.BytesIO()
    savemat(buf, {'X': np.ascontiguousarray(images.transpose(1, 2, 3, 0)), 'y': y})
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b' ')  # the description, without today's date
    path = Path(root) / f'{split}_32x32.mat'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path
