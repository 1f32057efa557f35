"""tools/data/make_small_datasets.py: each data set, made into a temporary directory, loads
through the frameworks' own dataset classes with the right counts, shapes and labels; the
filter-made vessel labels behave like vessels; generation is deterministic, idempotent,
atomic and never touches a directory it did not make."""
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from mmengine.registry import init_default_scope
from PIL import Image

from conftest import ROOT

spec = importlib.util.spec_from_file_location(
    'make_small_datasets', ROOT / 'tools/data/make_small_datasets.py')
mk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mk)

pytestmark = pytest.mark.timeout(120)


def _made(tmp_path_factory, only):
    root = tmp_path_factory.mktemp(only)
    mk.make(root, only)
    return root


@pytest.fixture(scope='module')
def cub_root(tmp_path_factory):
    return _made(tmp_path_factory, 'cub') / 'digits_cub'


@pytest.fixture(scope='module')
def imagenet_root(tmp_path_factory):
    return _made(tmp_path_factory, 'imagenet') / 'digits_imagenet'


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    return _made(tmp_path_factory, 'coco') / 'digits_coco'


@pytest.fixture(scope='module')
def fundus_root(tmp_path_factory):
    return _made(tmp_path_factory, 'fundus')


def digest(root: Path, pattern='*'):
    return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob(pattern)) if p.is_file()]


def digit_index(path) -> int:
    """The load_digits index a digit file is named after (digit_<d>_<idx>.png)."""
    return int(Path(path).stem.rsplit('_', 1)[1])


# ------------------------------------------------------------------------------ CUB
def test_digits_cub_is_read_by_mmpretrain_cub(cub_root):
    from mmpretrain.datasets import CUB
    init_default_scope('mmpretrain')
    meta = dict(classes=mk.DIGIT_CLASSES)
    train = CUB(data_root=str(cub_root), split='train', pipeline=[], metainfo=meta)
    test = CUB(data_root=str(cub_root), split='test', pipeline=[], metainfo=meta)
    assert (len(train), len(test)) == (600, 300)
    assert train.CLASSES == mk.DIGIT_CLASSES
    for ds, per_class in ((train, 60), (test, 30)):
        infos = [ds.get_data_info(i) for i in range(len(ds))]
        labels = np.array([info['gt_label'] for info in infos])
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
        # the class directory names the digit the label says
        assert all(Path(info['img_path']).parent.name == mk.DIGIT_CUB_DIRS[info['gt_label']]
                   for info in infos)
        img = Image.open(infos[0]['img_path'])
        assert (img.size, img.mode) == ((32, 32), 'RGB')
        arr = np.asarray(img)
        assert arr.max() >= 200 and arr.min() == 0  # stretched to 0..255, ink on black
    train_ids = {digit_index(train.get_data_info(i)['img_path']) for i in range(len(train))}
    test_ids = {digit_index(test.get_data_info(i)['img_path']) for i in range(len(test))}
    assert not train_ids & test_ids
    assert len((cub_root / 'classes.txt').read_text().splitlines()) == 10
    # without metainfo CUB keeps its 200 bird names (labels are unaffected)
    assert len(CUB(data_root=str(cub_root), split='test', pipeline=[]).CLASSES) == 200


# ------------------------------------------------------------------------- ImageNet
def test_digits_imagenet_split_files_and_folders(imagenet_root):
    from mmpretrain.datasets import CustomDataset, ImageNet
    init_default_scope('mmpretrain')
    root = str(imagenet_root)
    listed = ImageNet(data_root=root, split='train', pipeline=[])  # meta/train.txt
    listed_val = ImageNet(data_root=root, split='val', pipeline=[])
    scanned = CustomDataset(data_root=root, data_prefix='train', pipeline=[])
    scanned_in = ImageNet(data_root=root, data_prefix='val', pipeline=[],
                          metainfo=dict(classes=mk.DIGIT_CLASSES))
    assert (len(listed), len(listed_val), len(scanned), len(scanned_in)) == \
        (1200, 597, 1200, 597)
    assert scanned.CLASSES == mk.DIGIT_CLASSES

    def pairs(ds):
        return sorted((ds.get_data_info(i)['img_path'], ds.get_data_info(i)['gt_label'])
                      for i in range(len(ds)))
    assert pairs(listed) == pairs(scanned)  # both modes agree on paths and labels
    assert pairs(listed_val) == pairs(scanned_in)
    labels = np.array([lab for _, lab in pairs(listed)])
    assert labels.min() == 0 and labels.max() == 9 and np.bincount(labels).min() >= 110
    img = Image.open(listed.get_data_info(0)['img_path'])
    assert (img.size, img.mode) == ((32, 32), 'RGB')
    # CustomDataset/ImageNet refuse a folder scan with ImageNet's 1,000 classes
    with pytest.raises(AssertionError, match='number of subfolders'):
        ImageNet(data_root=root, data_prefix='train', pipeline=[])


def test_no_test_digit_is_in_any_training_split(cub_root, imagenet_root):
    def ids(path):
        return {digit_index(line.split()[0]) for line in path.read_text().splitlines()}
    imagenet_train = ids(imagenet_root / 'meta/train.txt')
    imagenet_val = ids(imagenet_root / 'meta/val.txt')
    assert not imagenet_train & imagenet_val and len(imagenet_train | imagenet_val) == 1797
    split = dict(line.split() for line in (cub_root / 'train_test_split.txt').read_text()
                 .splitlines())
    names = dict(line.split() for line in (cub_root / 'images.txt').read_text().splitlines())
    cub_test = {digit_index(names[k]) for k, s in split.items() if s == '0'}
    cub_train = {digit_index(names[k]) for k, s in split.items() if s == '1'}
    assert cub_test <= imagenet_val and cub_train <= imagenet_train


# ----------------------------------------------------------------------------- COCO
def test_digits_coco_read_by_mmdet_with_tight_boxes_and_masks(coco_root):
    import pycocotools.mask as mask_util
    from mmdet.datasets import CocoDataset
    init_default_scope('mmdet')
    meta = dict(classes=mk.DIGIT_COCO_CLASSES)
    sets = {split: CocoDataset(data_root=str(coco_root),
                               ann_file=f'annotations/instances_{split}.json',
                               data_prefix=dict(img=f'{split}/'), metainfo=meta,
                               test_mode=False, pipeline=[])
            for split in ('train2017', 'val2017')}
    assert (len(sets['train2017']), len(sets['val2017'])) == (160, 40)
    raw = {a['id']: a for split in sets for a in json.loads(
        (coco_root / f'annotations/instances_{split}.json').read_text())['annotations']}
    seen_labels = set()
    for ds in sets.values():
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            img = np.asarray(Image.open(info['img_path']))
            assert img.shape == (info['height'], info['width'], 3) == (128, 128, 3)
            assert 1 <= len(info['instances']) <= 4
            union = np.zeros((128, 128), int)
            for inst in info['instances']:
                x0, y0, x1, y1 = inst['bbox']
                assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
                assert 16 * 0.3 <= max(x1 - x0, y1 - y0) <= 48
                assert 0 <= inst['bbox_label'] < 10 and inst['ignore_flag'] == 0
                seen_labels.add(inst['bbox_label'])
                mask = mask_util.decode(mask_util.merge(
                    mask_util.frPyObjects(inst['mask'], 128, 128))).astype(bool)
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                # the box is the tight box of the digit's mask
                assert [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1] == [x0, y0, x1, y1]
                union += mask
                # the digit's ink is brighter than the background inside its own box
                lum = img.astype(float).mean(-1)
                box = np.zeros_like(mask)
                box[int(y0):int(y1), int(x0):int(x1)] = True
                if (box & ~mask).sum() >= 10:
                    assert lum[mask].mean() > lum[box & ~mask].mean() + 30
            assert union.max() == 1  # digits never overlap
    assert seen_labels == set(range(10))
    for ann in raw.values():
        rle = mask_util.merge(mask_util.frPyObjects(ann['segmentation'], 128, 128))
        assert ann['area'] == mask_util.area(rle) and ann['iscrowd'] == 0
    # the masks load through mmdet's own transform (as Mask R-CNN reads them)
    from mmdet.datasets.transforms import LoadAnnotations
    results = LoadAnnotations(with_bbox=True, with_mask=True)(
        dict(sets['val2017'].get_data_info(0), ori_shape=(128, 128)))
    assert results['gt_masks'].masks.shape[1:] == (128, 128)
    assert len(results['gt_masks']) == len(results['gt_bboxes'])


# --------------------------------------------------------------------------- fundus
FUNDUS = [('DRIVE', 'DRIVEDataset', (160, 160)), ('STARE', 'STAREDataset', (160, 160)),
          ('CHASE_DB1', 'ChaseDB1Dataset', (192, 192)), ('HRF', 'HRFDataset', (256, 256))]


@pytest.mark.parametrize('name,cls,hw', FUNDUS, ids=[f[0] for f in FUNDUS])
def test_fundus_layouts_read_by_mmseg(fundus_root, name, cls, hw):
    import mmseg.datasets
    init_default_scope('mmseg')
    rng = np.random.RandomState(0)
    for split, count in (('training', 8), ('validation', 4)):
        ds = getattr(mmseg.datasets, cls)(
            data_root=str(fundus_root / name), pipeline=[],
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'))
        assert len(ds) == count
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            assert Path(info['seg_map_path']).is_file()  # every image has its label
            img = np.asarray(Image.open(info['img_path']))
            lab_img = Image.open(info['seg_map_path'])
            assert lab_img.mode == 'L'  # single-channel 8-bit, as mmseg's converters write
            lab = np.asarray(lab_img)
            assert img.shape == (*hw, 3) and lab.shape == hw
            assert set(np.unique(lab)) <= {0, 1}
            fov = img.astype(int).sum(-1) > 60
            assert fov.mean() > 0.7  # mostly inside the field of view
            vessel = (lab == 1) & fov
            frac = vessel.sum() / fov.sum()
            assert 0.06 < frac < 0.18, f'vessel fraction {frac:.3f}'
            # vessels are darker in the green channel than the rest of the field of view;
            # the same test on a random mask of the same size finds no difference
            green = img[..., 1].astype(float)
            gap = green[fov & ~vessel].mean() - green[vessel].mean()
            shuffled = np.zeros(fov.sum(), bool)
            shuffled[rng.choice(fov.sum(), vessel.sum(), replace=False)] = True
            random_mask = np.zeros_like(fov)
            random_mask[fov] = shuffled
            random_gap = green[fov & ~random_mask].mean() - green[random_mask].mean()
            assert gap > 8 and abs(random_gap) < 3, (gap, random_gap)
    # and through mmseg's own loading transforms
    ds = getattr(mmseg.datasets, cls)(
        data_root=str(fundus_root / name),
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])
    item = ds[0]
    assert item['img'].shape == (*hw, 3) and set(np.unique(item['gt_seg_map'])) <= {0, 1}


# ----------------------------------------------------------- determinism, safety, CLI
def test_generation_is_deterministic(tmp_path, cub_root, coco_root, fundus_root):
    mk.make(tmp_path, ['cub', 'coco', 'drive', 'hrf'])
    for made in (cub_root, coco_root, fundus_root / 'DRIVE', fundus_root / 'HRF'):
        again = tmp_path / made.name
        assert digest(made) == digest(again), made.name  # labels, images and marker


def test_idempotent_forced_and_never_clobbers(tmp_path, capsys):
    assert mk.main(['--out', str(tmp_path), '--only', 'stare']) == 0
    assert '[wrote]' in capsys.readouterr().out
    first = digest(tmp_path / 'STARE')
    mk.main(['--out', str(tmp_path), '--only', 'stare'])
    assert '[skip]' in capsys.readouterr().out
    mk.main(['--out', str(tmp_path), '--only', 'stare', '--force'])
    assert '[wrote]' in capsys.readouterr().out and digest(tmp_path / 'STARE') == first
    # a marker of an older version of the script: rebuilt
    (tmp_path / 'STARE' / mk.MARKER).write_text(mk.MARKER_HEAD + '\n')
    (tmp_path / 'STARE' / 'stale.txt').write_text('old')
    mk.make(tmp_path, 'stare')
    assert digest(tmp_path / 'STARE') == first
    # a directory the script did not make is never touched, even with --force
    foreign = tmp_path / 'HRF'
    foreign.mkdir()
    (foreign / 'mine.png').write_bytes(b'a user file')
    with pytest.raises(SystemExit, match='not made by this script'):
        mk.make(tmp_path, {'hrf'}, force=True)
    assert [p.name for p in foreign.iterdir()] == ['mine.png']
    with pytest.raises(SystemExit, match='unknown'):
        mk.make(tmp_path, 'cifar')


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('disk full')
    monkeypatch.setattr(mk, 'pick_windows', broken)
    with pytest.raises(RuntimeError, match='disk full'):
        mk.make(tmp_path, 'chase_db1')
    assert list(tmp_path.iterdir()) == []
