"""CIFAR variants for the VCReg experiments, on mmpretrain's ``CIFAR10``/``CIFAR100``.

* :class:`CIFAR100Coarse` -- CIFAR-100 with its 20 superclass labels (VCReg Table 5,
  App. C.3): the same pickles, ``gt_label`` read from their ``'coarse_labels'`` field,
  the 20 ``coarse_label_names`` as classes (the fine label is kept as ``'fine_label'``).
* :class:`UncheckedCIFAR10`, :class:`UncheckedCIFAR100` -- mmpretrain's readers of the
  CIFAR python layout, minus the md5 comparison of every file and the download.
  mmpretrain's ``CIFAR10`` refuses any file whose md5 is not the official one's, so data
  written in the same layout (the small digits sets of
  ``tools/data/make_small_datasets.py``, a converted data set) needs one of these. A
  config selects it by type, e.g. ``--cfg-options train_dataloader.dataset.type=
  UncheckedCIFAR10`` (``train_dataloader.dataset.dataset.type=...`` inside a
  ``LongTailDataset``); :class:`CIFAR100Coarse` takes ``check_md5=False`` instead.

Files: ``<data_root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``<data_root>/cifar-100-python/{train, test, meta}``, the official archives unpacked
(``sslreg.datasets.layouts`` writes them). With ``download=False`` a missing file is a
``FileNotFoundError`` naming it.

Registered in MMEngine's root ``DATASETS`` (found from mmpretrain's scope by the parent
lookup, as sslreg's other names).
"""
import pickle
from typing import List

from mmengine.fileio import exists, get, join_path
from mmengine.registry import DATASETS
from mmpretrain.datasets import CIFAR10, CIFAR100

from .layouts import CIFAR100_COARSE_CATEGORIES, CIFAR100_FINE_TO_COARSE

__all__ = ['CIFAR100Coarse', 'UncheckedCIFAR10', 'UncheckedCIFAR100',
           'CIFAR100_COARSE_CATEGORIES', 'CIFAR100_FINE_TO_COARSE']


class _CIFARFiles:
    """Mixin before mmpretrain's ``CIFAR10``/``CIFAR100``: ``check_md5=False`` keeps the
    file list but compares no md5; with ``download=False`` missing files are named."""

    def __init__(self, *args, check_md5: bool = True, **kwargs):
        if not check_md5:  # instance attributes, read by the parent's integrity check
            self.train_list = [[name, None] for name, _ in type(self).train_list]
            self.test_list = [[name, None] for name, _ in type(self).test_list]
            self.meta = dict(type(self).meta, md5=None)
        self.check_md5 = check_md5
        super().__init__(*args, **kwargs)

    def _split_files(self) -> List[str]:
        names = self.train_list if self.split == 'train' else self.test_list
        return [join_path(self.data_prefix['root'], self.base_folder, name) for name, _ in names]

    def load_data_list(self):
        if not self.download:
            files = [join_path(self.data_prefix['root'], self.base_folder, name)
                     for name, _ in self.train_list + self.test_list]
            missing = [f for f in files if not exists(f)]
            if missing:
                raise FileNotFoundError(
                    f'{type(self).__name__}: missing {missing} (expected the python layout '
                    f'<data_root>/{self.base_folder}/: {[n for n, _ in self.train_list]}, '
                    f'{[n for n, _ in self.test_list]}; data_root={self.data_root!r})')
        return super().load_data_list()


@DATASETS.register_module()
class UncheckedCIFAR10(_CIFARFiles, CIFAR10):
    """mmpretrain's ``CIFAR10`` without md5 checks or download: the same files, layout
    and classes (``metainfo=dict(classes=...)`` renames them)."""

    def __init__(self, *args, download: bool = False, **kwargs):
        super().__init__(*args, check_md5=False, download=download, **kwargs)


@DATASETS.register_module()
class UncheckedCIFAR100(_CIFARFiles, CIFAR100):
    """mmpretrain's ``CIFAR100`` (fine labels) without md5 checks or download."""

    def __init__(self, *args, download: bool = False, **kwargs):
        super().__init__(*args, check_md5=False, download=download, **kwargs)


@DATASETS.register_module()
class CIFAR100Coarse(_CIFARFiles, CIFAR100):
    """CIFAR-100 with the 20 superclasses as labels.

    Args (besides mmpretrain ``CIFAR100``'s: ``data_root``, ``split``, ``download``, ...):
        check_md5: compare each file's md5 with the official one (True); False reads
            files written in the layout (small-data tests).

    Example::

        train_dataloader = dict(dataset=dict(type='CIFAR100Coarse', data_root='data/cifar100',
                                             split='train', pipeline=train_pipeline))
        data_preprocessor = dict(num_classes=20, ...)  # and head=dict(num_classes=20)
    """
    METAINFO = {'classes': CIFAR100_COARSE_CATEGORIES}
    meta = dict(CIFAR100.meta, key='coarse_label_names')  # the classes of the meta file

    def load_data_list(self):
        data_list = super().load_data_list()  # images and fine labels
        coarse = []
        for path in self._split_files():
            coarse.extend(pickle.loads(get(path), encoding='latin1')['coarse_labels'])
        if len(coarse) != len(data_list):
            raise ValueError(f'{type(self).__name__}: {len(coarse)} coarse labels for '
                             f'{len(data_list)} images in {self._split_files()}')
        for info, label in zip(data_list, coarse):
            info['fine_label'] = info['gt_label']
            info['gt_label'] = int(label)
        return data_list
