"""``SidAEViews``: two noisy views and the clean image, for SidAE.

"Self-Supervised Siamese Autoencoders" trains a Siamese network on two augmented
("noisy") views and reconstructs the clean, un-augmented image from each. Per image
this transform returns ``results['img'] = [view_1, view_2, clean]``; ``PackInputs``
packs the list and ``SelfSupDataPreprocessor`` normalizes all three alike, so the
model receives ``inputs = [v1, v2, x]``.

Views: the paper's CIFAR pipeline, in the order the paper lists it:

* ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` with probability 0.8,
* ``RandomResizedCrop(size, scale=(0.2, 1.0))``,
* ``RandomGrayscale(p=0.2)``,
* ``GaussianBlur(sigma in (0.1, 2.0), p=0.5)`` only with ``gaussian_blur=True`` (the
  paper's addition for MNIST-like data),
* ``RandomHorizontalFlip(p=0.5)``;

or any pipeline given as ``transforms``. The clean image is the input resized to
``size x size`` when its shape differs (MNIST 28 -> 32, STL-10 96 -> 32), otherwise
untouched. Gray ``(H, W)`` images are repeated to three channels first, so the colour
transforms and a 3-channel backbone apply to MNIST-like data.

Registered in MMEngine's root ``TRANSFORMS`` (found from mmpretrain's scope by the
parent lookup); the inner transforms are mmpretrain's and mmcv's.

Example::

    train_pipeline = [dict(type='LoadImageFromFile'),
                      dict(type='SidAEViews', size=32),
                      dict(type='PackInputs')]
"""
import copy
from typing import List, Optional

import numpy as np
from mmcv.transforms import BaseTransform, Compose, RandomApply
from mmengine.registry import TRANSFORMS

__all__ = ['SidAEViews', 'paper_view_pipeline']


def _build(cfg):
    # mmpretrain only when the paper's pipeline is built (sslreg.datasets itself needs
    # mmcv); importing mmpretrain.datasets registers its transforms. No circle.
    import mmpretrain.datasets  # noqa: F401
    from mmpretrain.registry import TRANSFORMS as MMPRETRAIN_TRANSFORMS
    return cfg if callable(cfg) else MMPRETRAIN_TRANSFORMS.build(cfg)


def paper_view_pipeline(size: int = 32, gaussian_blur: bool = False) -> List:
    """The paper's view augmentation (module docstring), as built transforms."""
    jitter = _build(dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                         hue=0.1))
    steps = [
        RandomApply(transforms=[jitter], prob=0.8),
        _build(dict(type='RandomResizedCrop', scale=size, crop_ratio_range=(0.2, 1.0),
                    backend='pillow')),
        _build(dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
                    channel_weights=(0.114, 0.587, 0.2989))),
    ]
    if gaussian_blur:
        steps.append(_build(dict(type='GaussianBlur', magnitude_range=(0.1, 2.0),
                                 magnitude_std='inf', prob=0.5)))
    steps.append(_build(dict(type='RandomFlip', prob=0.5, direction='horizontal')))
    return steps


@TRANSFORMS.register_module()
class SidAEViews(BaseTransform):
    """``results['img']`` -> ``[view_1, ..., view_n, clean]``.

    Args:
        size: side of the views and of the clean image (32 in the paper).
        gaussian_blur: add the paper's blur for MNIST-like data (default pipeline only).
        transforms: the view pipeline (list of transform dicts or callables); None
            takes the paper's (module docstring).
        num_views: number of augmented views (2).
    """

    def __init__(self, size: int = 32, gaussian_blur: bool = False,
                 transforms: Optional[List] = None, num_views: int = 2):
        if num_views < 1:
            raise ValueError(f'num_views must be >= 1, got {num_views}')
        self.size, self.num_views = size, num_views
        steps = paper_view_pipeline(size, gaussian_blur) if transforms is None else [
            _build(t) for t in transforms]
        self.pipeline = Compose(steps)
        self.resize = _build(dict(type='Resize', scale=(size, size), backend='pillow'))

    def _clean(self, results: dict) -> np.ndarray:
        img = results['img']
        if img.shape[:2] == (self.size, self.size):
            return img.copy()
        return self.resize(copy.deepcopy(results))['img']

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
            results = dict(results, img=img)
        views = []
        for _ in range(self.num_views):
            out = self.pipeline(copy.deepcopy(results))
            if out is None:
                raise RuntimeError('a SidAEViews view transform returned None')
            views.append(out['img'])
        results = dict(results)
        results['img'] = views + [self._clean(results)]
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(size={self.size}, num_views={self.num_views}, '
                f'pipeline={self.pipeline})')
