"""GeometricGroupViews on a real digits image, through mmpretrain's own pipeline
machinery (registry lookup under default_scope='mmpretrain', PackInputs, collate)."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, default_collate
from mmengine.registry import init_default_scope

from sslreg.geometry import GroupElement


def _digit(small_data):
    return str(next((small_data / 'digits_imagenet' / 'train' / 'digit_3').glob('*.png')))


def _pipeline(photometric):
    return Compose([
        dict(type='LoadImageFromFile'),
        dict(type='GeometricGroupViews',
             crop=[dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.3, 1.),
                        backend='pillow')],
             photometric=photometric),
        dict(type='PackInputs', meta_keys=('img_path', 'ser_g1', 'ser_g2')),
    ])


def test_three_views_share_crop_and_record_group_elements(small_data):
    init_default_scope('mmpretrain')
    np.random.seed(0)
    pipe = _pipeline([[], []])  # no jitter: views 0 and 2 must be the same crop
    out = pipe(dict(img_path=_digit(small_data)))
    v0, v1, v2 = out['inputs']
    assert v0.shape == v1.shape == v2.shape == (3, 32, 32)
    assert torch.equal(v0, v2)
    meta = out['data_samples'].metainfo
    g1, g2 = (GroupElement.from_tuple(meta[k]) for k in ('ser_g1', 'ser_g2'))
    for g in (g1, g2):
        assert 0.7 <= g.scale[0] * g.scale[1] <= 1.3
    # crops of view 1 are drawn independently
    assert any(not torch.equal(pipe(dict(img_path=_digit(small_data)))['inputs'][0],
                               pipe(dict(img_path=_digit(small_data)))['inputs'][1])
               for _ in range(5))


def test_independent_photometric_jitter_and_collate(small_data):
    init_default_scope('mmpretrain')
    np.random.seed(1)
    jitter = [dict(type='ColorJitter', brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1)]
    pipe = _pipeline([jitter])
    items = [pipe(dict(img_path=_digit(small_data))) for _ in range(4)]
    assert any(not torch.equal(it['inputs'][0], it['inputs'][2]) for it in items)
    batch = default_collate(items)
    assert len(batch['inputs']) == 3 and batch['inputs'][0].shape == (4, 3, 32, 32)
    assert len({tuple(ds.metainfo['ser_g1']) for ds in batch['data_samples']}) > 1


def test_bad_arguments():
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError):
        _pipeline([[], [], []])
    with pytest.raises(ValueError):
        Compose([dict(type='GeometricGroupViews', crop=[], photometric=[[]],
                      scale_range=(1.3, 0.7))])
