"""``GeometricGroupViews``: the views SER trains on, with their group elements.

Per image it returns three views in ``results['img']``:

* view 0 = ``photometric[0](crop(img))``;
* view 1 = ``photometric[1](crop'(img))``, an independent crop -- views 0 and 1 are
  the base method's usual two views (MoCo v3's ``view_pipeline1/2`` when ``crop`` is
  its RandomResizedCrop + RandomFlip and ``photometric`` its colour/blur/solarize);
* view 2 = ``photometric[1](crop(img))``: view 0's crop, independently jittered.

and records two sampled group elements (:mod:`sslreg.geometry`: rotation by a multiple
of 90 degrees, horizontal flip, anisotropic patch-aligned scaling) as tuples
``(rot, flip, s_h, s_w)`` under ``'ser_g1'`` and ``'ser_g2'`` (keep them with
``PackInputs(meta_keys=(..., 'ser_g1', 'ser_g2'))``).

The SER algorithms use views 0/1 for the baseline sub-batch and ``g1 . view0`` /
``g2 . view2`` for the equivariance sub-batch (the released code likewise draws
both equivariance views from the first crop). The geometry is **not** applied here:
the views leave the pipeline in the canonical frame, at one size, so a batch stacks
(``default_collate``); the model applies ``g`` to the normalized batch with the same
resampling kernel it uses on token maps. (Normalization is affine and bilinear or
bicubic weights sum to one, so resizing after normalizing equals resizing before.)

Registered in MMEngine's root ``TRANSFORMS``, found from mmpretrain's scope by the
parent lookup.
"""
from typing import List, Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmengine.registry import TRANSFORMS

from ..geometry import sample_element

__all__ = ['GeometricGroupViews']


@TRANSFORMS.register_module()
class GeometricGroupViews(BaseTransform):
    """Two baseline views + one equivariance partner view, and two group elements.

    Args:
        crop: the spatial pipeline shared by views 0 and 2 (and drawn again for view
            1), e.g. ``[RandomResizedCrop(scale=224), RandomFlip(prob=0.5)]``. Its
            output sides must be multiples of the backbone's patch size.
        photometric: one or two photometric pipelines (view 0 uses the first, views 1
            and 2 the last): colour jitter, grayscale, blur, solarize. Spatial
            transforms do not belong here.
        scale_range: range of the area factor of the scaling (0.7-1.3, the released
            ``--equiv-scale``); ``(1, 1)`` with ``ratio_range=(1, 1)`` for D4 only.
        ratio_range: range of the aspect-ratio change (3/4-4/3, released
            ``--equiv-aspect-ratio``), log-uniform.
        rotations: allowed numbers of quarter turns.
        flip_prob: probability of the horizontal flip in each element.
    """

    def __init__(self, crop: List[dict], photometric: Sequence[List[dict]],
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
        self.crop = Compose(crop)
        self.photometric = [Compose(p) for p in photometric]
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

    def transform(self, results: dict) -> Optional[dict]:
        photo_a, photo_b = self.photometric[0], self.photometric[-1]
        cropped = self.crop(self._copy(results))
        other = self.crop(self._copy(results))
        view0 = photo_a(self._copy(cropped))['img']
        view1 = photo_b(other)['img']
        view2 = photo_b(self._copy(cropped))['img']
        results['img'] = [view0, view1, view2]
        results['img_shape'] = view0.shape[:2]
        results['ser_g1'] = self._sample()
        results['ser_g2'] = self._sample()
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(crop={self.crop}, photometric={self.photometric}, '
                f'scale_range={self.scale_range}, ratio_range={self.ratio_range}, '
                f'rotations={self.rotations}, flip_prob={self.flip_prob})')
