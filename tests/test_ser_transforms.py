"""GeometricGroupViews on a real digits image, through mmpretrain's own pipeline
machinery (registry lookup under default_scope='mmpretrain', PackInputs, collate): the
paper's uncropped equivariance views (default) and the released code's shared crop."""
import mmcv
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import Compose, default_collate
from mmengine.registry import init_default_scope

from sslreg import geometry as G
from sslreg.geometry import GroupElement


def _digit(small_data):
    return str(next((small_data / 'digits_imagenet' / 'train' / 'digit_3').glob('*.png')))


def _pipeline(photometric, size=32, crop_range=(0.3, 1.), **kwargs):
    return Compose([
        dict(type='LoadImageFromFile'),
        dict(type='GeometricGroupViews',
             crop=[dict(type='RandomResizedCrop', scale=size, crop_ratio_range=crop_range,
                        backend='pillow')],
             photometric=photometric, **kwargs),
        dict(type='PackInputs', meta_keys=('img_path', 'ser_g1', 'ser_g2')),
    ])


def _group_elements(out):
    meta = out['data_samples'].metainfo
    return [GroupElement.from_tuple(meta[k]) for k in ('ser_g1', 'ser_g2')]


def test_four_views_and_recorded_group_elements(small_data):
    init_default_scope('mmpretrain')
    np.random.seed(0)
    pipe = _pipeline([[], []])  # no jitter: the two equivariance views are the same image
    out = pipe(dict(img_path=_digit(small_data)))
    v0, v1, e1, e2 = out['inputs']
    assert v0.shape == v1.shape == e1.shape == e2.shape == (3, 32, 32)
    assert torch.equal(e1, e2)
    for g in _group_elements(out):
        assert 0.7 <= g.scale[0] * g.scale[1] <= 1.3
    # crops of view 1 are drawn independently
    assert any(not torch.equal(pipe(dict(img_path=_digit(small_data)))['inputs'][0],
                               pipe(dict(img_path=_digit(small_data)))['inputs'][1])
               for _ in range(5))


def _full_image_action(path, g, size, unit=8):
    """g . (the whole image resized to size), computed independently of the pipeline
    (torch bilinear resize; the pipeline resizes with pillow)."""
    img = torch.from_numpy(mmcv.imread(path)).permute(2, 0, 1)[None].float()
    full = F.interpolate(img, size=(size, size), mode='bilinear', align_corners=False)[0]
    return G.act(full, g, unit=unit)


def test_default_equivariance_views_are_the_action_on_the_full_image(small_data):
    """The paper: the equivariance sub-batch disables cropping. Each equivariance view
    the model builds (x_i = g_i . e_i, SERMixin.ser_views) equals g_i applied to the
    whole image resized to the view size, up to resampling (pillow vs torch bilinear,
    uint8 rounding); the baseline views stay crops."""
    init_default_scope('mmpretrain')
    np.random.seed(0)
    path = _digit(small_data)
    pipe = _pipeline([[], []], size=48, crop_range=(0.2, 0.5))  # 32 px image -> 48 px views
    for _ in range(3):
        out = pipe(dict(img_path=path))
        g1, g2 = _group_elements(out)
        _, _, e1, e2 = out['inputs']
        for e, g in ((e1, g1), (e2, g2)):
            x = G.act(e.float(), g, unit=8)  # what the model does to the equivariance view
            want = _full_image_action(path, g, 48)
            assert x.shape == want.shape
            assert float((x - want).abs().max()) < 2.0  # of 255: resampling only
        # the baseline view 0 is a crop (20-50% of the area), far from the full image
        v0 = out['inputs'][0].float()
        assert float((v0 - _full_image_action(path, GroupElement(), 48)).abs().mean()) > 10


def test_shared_crop_option_is_the_released_codes_crop(small_data):
    """equiv_crop='shared_crop' (the released code): both equivariance views are view
    0's RandomResizedCrop, so they differ from the full-image action."""
    init_default_scope('mmpretrain')
    np.random.seed(0)
    path = _digit(small_data)
    pipe = _pipeline([[], []], size=48, crop_range=(0.2, 0.5), equiv_crop='shared_crop')
    for _ in range(3):
        out = pipe(dict(img_path=path))
        v0, _, e1, e2 = out['inputs']
        assert torch.equal(e1, v0) and torch.equal(e2, v0)  # no jitter: view 0's crop
        for e, g in zip((e1, e2), _group_elements(out)):
            diff = (G.act(e.float(), g, unit=8) - _full_image_action(path, g, 48)).abs()
            assert float(diff.mean()) > 10


def test_equiv_size_resizes_the_full_image(small_data):
    init_default_scope('mmpretrain')
    out = _pipeline([[], []], size=32, equiv_size=64)(dict(img_path=_digit(small_data)))
    assert out['inputs'][0].shape == (3, 32, 32) and out['inputs'][2].shape == (3, 64, 64)


def test_independent_photometric_jitter_and_collate(small_data):
    init_default_scope('mmpretrain')
    np.random.seed(1)
    jitter = [dict(type='ColorJitter', brightness=0.8, contrast=0.8, saturation=0.4, hue=0.1)]
    pipe = _pipeline([jitter])
    items = [pipe(dict(img_path=_digit(small_data))) for _ in range(4)]
    assert any(not torch.equal(it['inputs'][2], it['inputs'][3]) for it in items)
    batch = default_collate(items)
    assert len(batch['inputs']) == 4 and batch['inputs'][0].shape == (4, 3, 32, 32)
    assert len({tuple(ds.metainfo['ser_g1']) for ds in batch['data_samples']}) > 1


def test_bad_arguments():
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError):
        _pipeline([[], [], []])
    with pytest.raises(ValueError):
        Compose([dict(type='GeometricGroupViews', crop=[], photometric=[[]],
                      scale_range=(1.3, 0.7))])
    with pytest.raises(ValueError, match='equiv_crop'):
        Compose([dict(type='GeometricGroupViews', crop=[], photometric=[[]],
                      equiv_crop='random_resized_crop')])
