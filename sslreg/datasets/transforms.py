"""``GeometricGroupViews``: the views SER trains on, with their group elements.

Per image it returns four views in ``results['img']``:

* view 0 = ``photometric[0](crop(img))`` and view 1 = ``photometric[1](crop'(img))``,
  two independent crops: the base method's usual two views (MoCo v3's
  ``view_pipeline1/2`` when ``crop`` is its RandomResizedCrop + RandomFlip and
  ``photometric`` its colour/blur/solarize). The **baseline sub-batch** uses them.
* views 2 and 3: the two un-moved **equivariance views** ``e_1``, ``e_2`` (independent
  photometric jitter, ``photometric[0]`` and ``photometric[1]``) of one geometric base,
  chosen by ``equiv_crop``:

  - ``'none'`` (default; **the paper**: the equivariance sub-batch "disables
    cropping"): the whole image, resized to the view size (no crop, no random flip;
    the aspect ratio follows the view's, as RandomResizedCrop's output does);
  - ``'shared_crop'`` (**the authors' released code**, ``builder/moco.py``: both
    equivariance views are re-jittered copies of the first RandomResizedCrop +
    flip, ``images[0]``): view 0's crop, i.e. ``crop(img)`` -- RandomResizedCrop of
    scale 0.08-1 in the ImageNet configs.

and records two sampled group elements (:mod:`sslreg.geometry`: rotation by a multiple
of 90 degrees, horizontal flip, anisotropic patch-aligned scaling) as tuples
``(rot, flip, s_h, s_w)`` under ``'ser_g1'`` and ``'ser_g2'`` (keep them with
``PackInputs(meta_keys=(..., 'ser_g1', 'ser_g2'))``), drawn independently as in the
paper (the released code draws the second as the complement of the first's flip and
180-degree rotation).

The SER algorithms use views 0/1 for the baseline sub-batch and
:math:`x_1 = g_1 e_1`, :math:`x_2 = g_2 e_2` for the equivariance sub-batch (the
pipeline cannot know which samples land in which sub-batch, so every sample carries
both). The geometry is **not** applied here: the views leave the pipeline in the
canonical frame, at one size, so a batch stacks (``default_collate``); the model
applies ``g`` to the normalized batch with the same resampling kernel it uses on token
maps. (Normalization is affine and bilinear or bicubic weights sum to one, so
resizing after normalizing equals resizing before.) So with ``equiv_crop='none'`` the
equivariance views the network sees are exactly ``g . resize(img)``, up to resampling.

Registered in MMEngine's root ``TRANSFORMS``, found from mmpretrain's scope by the
parent lookup.
"""
from typing import List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmengine.registry import TRANSFORMS

from ..geometry import sample_element

__all__ = ['GeometricGroupViews', 'EQUIV_CROPS']

#: ``'none'``: the paper (full image, resized); ``'shared_crop'``: the released code.
EQUIV_CROPS = ('none', 'shared_crop')


@TRANSFORMS.register_module()
class GeometricGroupViews(BaseTransform):
    """Two baseline views + two equivariance views, and two group elements.

    Args:
        crop: the spatial pipeline of the baseline views 0 and 1 (drawn once for each),
            e.g. ``[RandomResizedCrop(scale=224), RandomFlip(prob=0.5)]``. Its output
            sides must be multiples of the backbone's patch size.
        photometric: one or two photometric pipelines (views 0 and 2 use the first,
            views 1 and 3 the last): colour jitter, grayscale, blur, solarize. Spatial
            transforms do not belong here.
        equiv_crop: base of the equivariance views: ``'none'`` (the paper, default) =
            the full image resized to ``equiv_size``; ``'shared_crop'`` (the released
            code) = view 0's crop.
        equiv_size: ``(h, w)`` or an int, the size of the full-image resize
            (``equiv_crop='none'``); None = view 0's size (the crop's output size).
            Sides must be multiples of the patch size.
        equiv_interpolation: kernel of that resize (``mmcv.imresize``, pillow backend;
            pillow's bilinear filters when it shrinks).
        scale_range: range of the area factor of the scaling (0.7-1.3, the released
            ``--equiv-scale``); ``(1, 1)`` with ``ratio_range=(1, 1)`` for D4 only.
        ratio_range: range of the aspect-ratio change (3/4-4/3, released
            ``--equiv-aspect-ratio``), log-uniform.
        rotations: allowed numbers of quarter turns.
        flip_prob: probability of the horizontal flip in each element.
    """

    def __init__(self, crop: List[dict], photometric: Sequence[List[dict]],
                 equiv_crop: str = 'none',
                 equiv_size: Optional[Union[int, Sequence[int]]] = None,
                 equiv_interpolation: str = 'bilinear',
                 scale_range: Sequence[float] = (0.7, 1.3),
                 ratio_range: Sequence[float] = (3 / 4, 4 / 3),
                 rotations: Sequence[int] = (0, 1, 2, 3), flip_prob: float = 0.5):
        photometric = list(photometric)
        if photometric and isinstance(photometric[0], dict):
            photometric = [photometric]  # a single pipeline given as a list of dicts
        if not 1 <= len(photometric) <= 2:
            raise ValueError('photometric takes one or two pipelines (lists of transform '
                             f'dicts), got {len(photometric)}')
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f'scale_range must be 0 < low <= high, got {scale_range}')
        if not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f'ratio_range must be 0 < low <= high, got {ratio_range}')
        if equiv_crop not in EQUIV_CROPS:
            raise ValueError(f'equiv_crop must be one of {EQUIV_CROPS}, got {equiv_crop!r}')
        if isinstance(equiv_size, int):
            equiv_size = (equiv_size, equiv_size)
        self.crop = Compose(crop)
        self.photometric = [Compose(p) for p in photometric]
        self.equiv_crop = equiv_crop
        self.equiv_size: Optional[Tuple[int, int]] = (
            None if equiv_size is None else (int(equiv_size[0]), int(equiv_size[1])))
        self.equiv_interpolation = equiv_interpolation
        self.scale_range = tuple(scale_range)
        self.ratio_range = tuple(ratio_range)
        self.rotations = tuple(int(r) for r in rotations)
        self.flip_prob = float(flip_prob)

    def _sample(self):
        return sample_element(self.scale_range, self.ratio_range, self.rotations, self.flip_prob,
                              rng=np.random).to_tuple()

    @staticmethod
    def _copy(results: dict) -> dict:
        out = dict(results)
        if isinstance(out.get('img'), np.ndarray):
            out['img'] = out['img'].copy()
        return out

    def full_image(self, results: dict, size: Tuple[int, int]) -> dict:
        """The whole image resized to ``size`` (h, w): the paper's equivariance base."""
        out = self._copy(results)
        img = out['img']
        if tuple(img.shape[:2]) != tuple(size):
            img = mmcv.imresize(img, (size[1], size[0]), interpolation=self.equiv_interpolation,
                                backend='pillow')
        out['img'] = img
        out['img_shape'] = img.shape[:2]
        return out

    def transform(self, results: dict) -> Optional[dict]:
        photo_a, photo_b = self.photometric[0], self.photometric[-1]
        cropped = self.crop(self._copy(results))
        other = self.crop(self._copy(results))
        view0 = photo_a(self._copy(cropped))['img']
        view1 = photo_b(other)['img']
        if self.equiv_crop == 'none':
            base = self.full_image(results, self.equiv_size or tuple(view0.shape[:2]))
        else:  # 'shared_crop': the released code's images[0]
            base = cropped
        eq1 = photo_a(self._copy(base))['img']
        eq2 = photo_b(self._copy(base))['img']
        results['img'] = [view0, view1, eq1, eq2]
        results['img_shape'] = view0.shape[:2]
        results['ser_g1'] = self._sample()
        results['ser_g2'] = self._sample()
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop={self.crop}, photometric={self.photometric}, '
                f'equiv_crop={self.equiv_crop!r}, equiv_size={self.equiv_size}, '
                f'scale_range={self.scale_range}, ratio_range={self.ratio_range}, '
                f'rotations={self.rotations}, flip_prob={self.flip_prob})')
