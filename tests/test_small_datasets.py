"""The small real datasets load through the frameworks' own dataset classes, and the
filter-made vessel labels behave like vessels."""
import hashlib
import importlib.util

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image

from conftest import ROOT

spec = importlib.util.spec_from_file_location(
    'make_small_datasets', ROOT / 'tools/data/make_small_datasets.py')
mk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mk)


def test_digits_cub_is_read_by_mmpretrain_cub(small_data):
    from mmpretrain.datasets import CUB
    init_default_scope('mmpretrain')
    train = CUB(data_root=str(small_data / 'digits_cub'), split='train', pipeline=[])
    test = CUB(data_root=str(small_data / 'digits_cub'), split='test', pipeline=[])
    assert (len(train), len(test)) == (600, 300)
    labels = [train.get_data_info(i)['gt_label'] for i in range(len(train))]
    assert sorted(set(labels)) == list(range(10))
    info = train.get_data_info(0)
    assert Image.open(info['img_path']).size == (32, 32)
    # the class directory names the digit: labels follow the images
    assert all(f'digit_{lab}' in train.get_data_info(i)['img_path']
               for i, lab in enumerate(labels[:50]))


def test_digits_imagenet_split_files_and_folders(small_data):
    from mmpretrain.datasets import CustomDataset, ImageNet
    init_default_scope('mmpretrain')
    root = small_data / 'digits_imagenet'
    listed = ImageNet(data_root=str(root), split='train', pipeline=[])
    scanned = CustomDataset(data_root=str(root), data_prefix='val', pipeline=[])
    assert len(listed) == 1200 and len(scanned) == 597
    assert {listed.get_data_info(i)['gt_label'] for i in range(len(listed))} == set(range(10))


def test_digits_coco_boxes_are_tight_on_the_digits(small_data):
    from mmdet.datasets import CocoDataset
    init_default_scope('mmdet')
    root = small_data / 'digits_coco'
    ds = CocoDataset(data_root=str(root), ann_file='annotations/instances_train2017.json',
                     data_prefix=dict(img='train2017/'), pipeline=[],
                     metainfo=dict(classes=tuple(str(d) for d in range(10))))
    assert len(ds) == 160
    for i in range(10):
        info = ds.get_data_info(i)
        img = np.asarray(Image.open(info['img_path']).convert('L'), float)
        assert 1 <= len(info['instances']) <= 4
        for inst in info['instances']:
            x0, y0, x1, y1 = map(int, inst['bbox'])
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            assert 0 <= inst['bbox_label'] < 10
            inside = img[y0:y1, x0:x1].mean()
            ring = np.concatenate([img[max(y0 - 3, 0):y0, x0:x1].ravel(),
                                   img[y1:y1 + 3, x0:x1].ravel()])
            if ring.size:  # the digit's ink is brighter than the background around it
                assert inside > ring.mean()


@pytest.mark.parametrize('name,cls', [('DRIVE', 'DRIVEDataset'), ('STARE', 'STAREDataset'),
                                      ('CHASE_DB1', 'ChaseDB1Dataset'), ('HRF', 'HRFDataset')])
def test_fundus_layouts_read_by_mmseg(small_data, name, cls):
    import mmseg.datasets
    init_default_scope('mmseg')
    for split, count in (('training', 8), ('validation', 4)):
        ds = getattr(mmseg.datasets, cls)(
            data_root=str(small_data / name), pipeline=[],
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'))
        assert len(ds) == count
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            img = np.asarray(Image.open(info['img_path']).convert('RGB'))
            lab = np.asarray(Image.open(info['seg_map_path']))
            assert lab.shape == img.shape[:2] and set(np.unique(lab)) <= {0, 1}
            frac = lab.mean()
            assert 0.02 < frac < 0.3, f'vessel fraction {frac:.3f}'
            # vessels are darker than the rest in the green channel (a random mask is not)
            green = img[..., 1].astype(float)
            assert green[lab == 1].mean() < green[lab == 0].mean() - 5


def test_generation_is_deterministic_and_never_clobbers(tmp_path):
    mk.make(tmp_path / 'a', only={'coco', 'drive'})
    mk.make(tmp_path / 'b', only={'coco', 'drive'})

    def digest(root):
        files = sorted(p for p in root.rglob('*') if p.is_file())
        return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
                for p in files]
    assert digest(tmp_path / 'a') == digest(tmp_path / 'b')
    foreign = tmp_path / 'c' / 'DRIVE'
    foreign.mkdir(parents=True)
    (foreign / 'mine.png').write_bytes(b'a user file')
    with pytest.raises(SystemExit, match='not made by this script'):
        mk.make(tmp_path / 'c', only={'drive'})
    assert (foreign / 'mine.png').read_bytes() == b'a user file'
