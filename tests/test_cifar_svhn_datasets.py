"""The data pieces of the VCReg experiment families: ``SVHN`` (official .mat layout),
``LongTailDataset`` (CIFAR-10/100-LT as LDAM makes them), ``CIFAR100Coarse`` (the 20
superclasses) and ``UncheckedCIFAR10/100`` (CIFAR's layout without the md5 check), their
layout writers, and the digits_cifar10/cifar100/svhn sets of make_small_datasets.py --
all on scikit-learn's real digits, each loaded through the registry under
``default_scope='mmpretrain'`` as a config names it. Ends with one tools/train.py run: a
CIFAR config with its dataset types swapped by --cfg-options, as small-data tests do."""
import hashlib
import importlib.util
import pickle

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS, init_default_scope
from scipy.io import loadmat, savemat

from conftest import ROOT, run_tool
from sslreg.datasets import (CIFAR100_COARSE_CATEGORIES, CIFAR100_FINE_TO_COARSE,
                             LongTailDataset, long_tail_counts, write_cifar10, write_cifar100,
                             write_svhn)

pytestmark = pytest.mark.timeout(120)

spec = importlib.util.spec_from_file_location(
    'make_small_datasets', ROOT / 'tools/data/make_small_datasets.py')
mk = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mk)


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    init_default_scope('mmpretrain')  # what the configs' default_scope does


def build(**cfg):
    return DATASETS.build(cfg)


@pytest.fixture(scope='module')
def digits():
    """120 real digits as (120, 32, 32, 3) uint8 with distinct channels (R = ink,
    G = inverse, B = half), so a channel or axis mix-up shows; labels 0..9."""
    from sklearn.datasets import load_digits
    d = load_digits()
    idx = np.concatenate([np.flatnonzero(d.target == c)[:12] for c in range(10)])
    idx = idx[np.random.RandomState(0).permutation(len(idx))]
    ink = np.kron(d.images[idx] * (255 / 16), np.ones((4, 4))).round().astype(np.uint8)
    return np.stack([ink, 255 - ink, ink // 2], axis=-1), d.target[idx].astype(np.int64)


def digest(root):
    return [(str(p.relative_to(root)), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob('*')) if p.is_file()]


# ------------------------------------------------------------------------------- SVHN
def test_svhn_reads_the_official_layout(tmp_path, digits):
    images, labels = digits
    # written here with scipy alone, exactly as the official files are laid out
    official = dict(X=np.ascontiguousarray(images.transpose(1, 2, 3, 0)),
                    y=np.where(labels == 0, 10, labels).astype(np.uint8)[:, None])
    assert official['X'].shape == (32, 32, 3, 120) and official['y'].shape == (120, 1)
    assert 0 not in official['y'] and (official['y'] == 10).sum() == 12
    savemat(str(tmp_path / 'train_32x32.mat'), official)
    savemat(str(tmp_path / 'test_32x32.mat'), dict(X=official['X'][..., :20],
                                                    y=official['y'][:20]))
    ds = build(type='SVHN', data_root=str(tmp_path), split='train')
    assert type(ds).__module__ == 'sslreg.datasets.svhn' and len(ds) == 120
    assert ds.metainfo['classes'] == tuple('0123456789')
    got = np.stack([ds.get_data_info(i)['img'] for i in range(len(ds))])
    assert got.dtype == np.uint8 and got.shape == (120, 32, 32, 3)
    np.testing.assert_array_equal(got, images)  # HWC, RGB in order
    np.testing.assert_array_equal(ds.get_gt_labels(), labels)  # 10 -> 0
    test = build(type='SVHN', data_root=str(tmp_path), split='test',
                 pipeline=[dict(type='PackInputs')])
    item = test[0]
    assert len(test) == 20 and tuple(item['inputs'].shape) == (3, 32, 32)
    assert item['data_samples'].gt_label.item() == labels[0]
    # sslreg's writer makes the same arrays
    write_svhn(tmp_path / 'ours', 'train', images, labels)
    ours = loadmat(str(tmp_path / 'ours' / 'train_32x32.mat'))
    for key in ('X', 'y'):
        assert ours[key].dtype == official[key].dtype
        np.testing.assert_array_equal(ours[key], official[key])


def test_svhn_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'extra_32x32\.mat'):
        build(type='SVHN', data_root=str(tmp_path), split='extra')
    with pytest.raises(ValueError, match='split'):
        build(type='SVHN', data_root=str(tmp_path), split='val')
    savemat(str(tmp_path / 'train_32x32.mat'),
            dict(X=np.zeros((32, 32, 3, 2), np.uint8), y=np.array([[0], [3]], np.uint8)))
    with pytest.raises(ValueError, match='1..10'):  # 0 is never an official label
        build(type='SVHN', data_root=str(tmp_path), split='train')


# ------------------------------------------------------------------------ long tail
class Labels(BaseDataset):
    """Labels only, CIFAR-sized: class c at positions c, c + C, c + 2C, ..."""

    def __init__(self, num_classes=10, per_class=5000, **kwargs):
        self.num_classes, self.per_class = num_classes, per_class
        super().__init__(metainfo=dict(classes=tuple(map(str, range(num_classes)))), **kwargs)

    def load_data_list(self):
        return [dict(gt_label=i % self.num_classes)
                for i in range(self.num_classes * self.per_class)]


def ldam_indices(labels, num_classes, imb_factor, rand_number=0):
    """LDAM-DRW's imbalance_cifar.py (get_img_num_per_cls + gen_imbalanced_data) on a label
    list, with numpy's global RNG as there."""
    state = np.random.get_state()
    try:
        np.random.seed(rand_number)
        img_max = len(labels) / num_classes
        nums = [int(img_max * (imb_factor ** (c / (num_classes - 1.0))))
                for c in range(num_classes)]
        targets = np.array(labels, dtype=np.int64)
        out = []
        for the_class, n in zip(np.unique(targets), nums):
            idx = np.where(targets == the_class)[0]
            np.random.shuffle(idx)
            out.extend(idx[:n].tolist())
        return out
    finally:
        np.random.set_state(state)


def test_long_tail_counts_are_the_papers():
    assert long_tail_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83,
                                               50]
    # the totals reported for CIFAR-10-LT / CIFAR-100-LT (Cao et al. 2019 and followers)
    for (n_max, classes), totals in {(5000, 10): {100: 12406, 50: 13996, 10: 20431},
                                     (500, 100): {100: 10847, 50: 12608, 10: 19573}}.items():
        for rho, total in totals.items():
            counts = long_tail_counts(n_max, classes, rho)
            assert sum(counts) == total and counts[0] == n_max
            assert counts[-1] == n_max // rho
            assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert long_tail_counts(5000, 10, 1) == [5000] * 10
    with pytest.raises(ValueError, match='>= 1'):
        long_tail_counts(5000, 10, 0.01)  # LDAM's inverse convention is refused


def test_long_tail_wrapper_on_cifar10_sizes():
    base = Labels()
    lt = build(type='LongTailDataset', dataset=base, imbalance_factor=100, seed=0)
    assert isinstance(lt, LongTailDataset)
    assert lt.num_per_class == (5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50)
    assert len(lt) == 12406 and lt.metainfo == base.metainfo
    labels = lt.get_gt_labels()
    assert np.bincount(labels).tolist() == list(lt.num_per_class)
    assert len(set(lt.indices)) == len(lt)  # no repeats
    assert lt.get_data_info(len(lt) - 1)['gt_label'] == 9 == lt.get_cat_ids(len(lt) - 1)[0]
    # the images LDAM's IMBALANCECIFAR10 keeps (same seed, same per-class shuffles)
    all_labels = [i % 10 for i in range(50000)]
    assert lt.indices == ldam_indices(all_labels, 10, 0.01)
    other = LongTailDataset(base, imbalance_factor=100, seed=1)
    assert other.num_per_class == lt.num_per_class and other.indices != lt.indices
    with pytest.raises(ValueError, match='>= 1'):
        LongTailDataset(base, imbalance_factor=0.5)


# ------------------------------------------------------------------------------- CIFAR
#: CIFAR-100's superclasses and their five classes (the data set's web page), in
#: mmpretrain's spelling of the fine names.
SUPERCLASSES = {
    'aquatic_mammals': 'beaver dolphin otter seal whale',
    'fish': 'aquarium_fish flatfish ray shark trout',
    'flowers': 'orchid poppy rose sunflower tulip',
    'food_containers': 'bottle bowl can cup plate',
    'fruit_and_vegetables': 'apple mushroom orange pear sweet_pepper',
    'household_electrical_devices': 'clock keyboard lamp telephone television',
    'household_furniture': 'bed chair couch table wardrobe',
    'insects': 'bee beetle butterfly caterpillar cockroach',
    'large_carnivores': 'bear leopard lion tiger wolf',
    'large_man-made_outdoor_things': 'bridge castle house road skyscraper',
    'large_natural_outdoor_scenes': 'cloud forest mountain plain sea',
    'large_omnivores_and_herbivores': 'camel cattle chimpanzee elephant kangaroo',
    'medium_mammals': 'fox porcupine possum raccoon skunk',
    'non-insect_invertebrates': 'crab lobster snail spider worm',
    'people': 'baby boy girl man woman',
    'reptiles': 'crocodile dinosaur lizard snake turtle',
    'small_mammals': 'hamster mouse rabbit shrew squirrel',
    'trees': 'maple_tree oak_tree palm_tree pine_tree willow_tree',
    'vehicles_1': 'bicycle bus motorcycle pickup_truck train',
    'vehicles_2': 'lawn_mower rocket streetcar tank tractor',
}


def test_fine_to_coarse_is_cifar100s_hierarchy():
    from mmpretrain.datasets.categories import CIFAR100_CATEGORIES
    assert tuple(SUPERCLASSES) == CIFAR100_COARSE_CATEGORIES
    groups = {c: set() for c in CIFAR100_COARSE_CATEGORIES}
    for fine, coarse in zip(CIFAR100_CATEGORIES, CIFAR100_FINE_TO_COARSE):
        groups[CIFAR100_COARSE_CATEGORIES[coarse]].add(fine)
    assert groups == {c: set(names.split()) for c, names in SUPERCLASSES.items()}


def test_cifar100_coarse_reads_the_python_layout(tmp_path, digits):
    images, labels = digits
    fine = labels * 10 + np.arange(len(labels)) % 10  # spread over the 100 classes
    coarse = np.array(CIFAR100_FINE_TO_COARSE)[fine]
    folder = write_cifar100(tmp_path, (images[:100], fine[:100], coarse[:100]),
                            (images[100:], fine[100:], coarse[100:]),
                            coarse_label_names=CIFAR100_COARSE_CATEGORIES)
    # CIFAR-100's python layout, read back by hand
    assert sorted(p.name for p in folder.iterdir()) == ['meta', 'test', 'train']
    entry = pickle.loads((folder / 'train').read_bytes(), encoding='latin1')
    assert {'filenames', 'batch_label', 'fine_labels', 'coarse_labels', 'data'} <= set(entry)
    assert entry['data'].shape == (100, 3072) and entry['data'].dtype == np.uint8
    np.testing.assert_array_equal(entry['data'][0, :1024].reshape(32, 32), images[0, ..., 0])
    meta = pickle.loads((folder / 'meta').read_bytes(), encoding='latin1')
    assert len(meta['fine_label_names']) == 100 and len(meta['coarse_label_names']) == 20

    ds = build(type='CIFAR100Coarse', data_root=str(tmp_path), split='train', check_md5=False)
    assert len(ds) == 100 and ds.metainfo['classes'] == CIFAR100_COARSE_CATEGORIES
    np.testing.assert_array_equal(ds.get_gt_labels(), coarse[:100])
    info = ds.get_data_info(7)
    assert info['fine_label'] == fine[7]
    np.testing.assert_array_equal(info['img'], images[7])
    test = build(type='CIFAR100Coarse', data_root=str(tmp_path), split='test', check_md5=False)
    np.testing.assert_array_equal(test.get_gt_labels(), coarse[100:])
    fine_ds = build(type='UncheckedCIFAR100', data_root=str(tmp_path), split='train')
    np.testing.assert_array_equal(fine_ds.get_gt_labels(), fine[:100])
    # by default the official md5s are checked: these files are not CIFAR-100's
    with pytest.raises(RuntimeError, match='Cannot find CIFAR100Coarse'):
        build(type='CIFAR100Coarse', data_root=str(tmp_path), download=False)


def test_unchecked_cifar10_and_the_md5_check(tmp_path, digits):
    images, labels = digits
    folder = write_cifar10(tmp_path, (images[:100], labels[:100]), (images[100:], labels[100:]))
    assert sorted(p.name for p in folder.iterdir()) == [
        'batches.meta', 'data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4',
        'data_batch_5', 'test_batch']
    batch = pickle.loads((folder / 'data_batch_2').read_bytes(), encoding='latin1')
    assert batch['labels'] == labels[20:40].tolist() and batch['data'].shape == (20, 3072)
    with pytest.raises(RuntimeError, match='Cannot find CIFAR10'):  # mmpretrain's md5 check
        build(type='CIFAR10', data_root=str(tmp_path), download=False)
    ds = build(type='UncheckedCIFAR10', data_root=str(tmp_path), split='train')
    assert len(ds) == 100 and ds.metainfo['classes'][0] == 'airplane'  # CIFAR-10's names
    np.testing.assert_array_equal(np.stack([ds.get_data_info(i)['img'] for i in range(100)]),
                                  images[:100])
    np.testing.assert_array_equal(ds.get_gt_labels(), labels[:100])
    (folder / 'data_batch_4').unlink()
    with pytest.raises(FileNotFoundError, match='data_batch_4'):
        build(type='UncheckedCIFAR10', data_root=str(tmp_path), split='test')


# ---------------------------------------------------------------- make_small_datasets
@pytest.fixture(scope='module')
def layout_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('layouts')
    mk.make(root, 'cifar10,cifar100,svhn')
    return root


def test_small_layouts_load_and_are_deterministic(layout_root, tmp_path):
    init_default_scope('mmpretrain')
    c10 = build(type='UncheckedCIFAR10', data_root=str(layout_root / 'digits_cifar10'),
                split='train')
    c100 = build(type='CIFAR100Coarse', data_root=str(layout_root / 'digits_cifar100'),
                 split='test', check_md5=False)
    svhn = build(type='SVHN', data_root=str(layout_root / 'digits_svhn'), split='train')
    assert (len(c10), len(c100), len(svhn)) == (500, 200, 500)
    assert np.bincount(c10.get_gt_labels()).tolist() == [50] * 10
    # the same digits in the same order in each layout
    np.testing.assert_array_equal(svhn.get_gt_labels(), c10.get_gt_labels())
    np.testing.assert_array_equal(svhn.get_data_info(3)['img'], c10.get_data_info(3)['img'])
    fine = build(type='UncheckedCIFAR100', data_root=str(layout_root / 'digits_cifar100'),
                 split='test').get_gt_labels()
    np.testing.assert_array_equal(c100.get_gt_labels(), np.array(CIFAR100_FINE_TO_COARSE)[fine])
    mk.make(tmp_path, 'cifar10,cifar100,svhn')
    for name in ('digits_cifar10', 'digits_cifar100', 'digits_svhn'):
        assert digest(tmp_path / name) == digest(layout_root / name), name


# ----------------------------------------------------------------- through tools/train.py
CONFIG = """
_base_ = ['mmpretrain::_base_/datasets/cifar10_bs16.py',
          'mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['sslreg'], allow_failed_imports=False)
model = dict(type='ImageClassifier',
             backbone=dict(type='CifarResNet', depth=8),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
                       loss=dict(type='CrossEntropyLoss')))
# CIFAR-10-LT (imbalance 10) over mmpretrain's stock CIFAR10 dataset config
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(type='LongTailDataset', imbalance_factor=10, seed=0,
                 dataset={{_base_.train_dataloader.dataset}}, _delete_=True))
val_dataloader = dict(batch_size=50, num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2))
"""


def test_cifar_lt_config_trains_on_the_small_layout(layout_root, tmp_path):
    """A stock-style CIFAR config (dataset type 'CIFAR10', data_root 'data/cifar10') runs
    on digits_cifar10 after the documented override: the CIFAR dataset types become
    UncheckedCIFAR10 and data_root the small set's."""
    cfg = tmp_path / 'cifar10_lt_cifarresnet8.py'
    cfg.write_text(CONFIG)
    assert Config.fromfile(str(cfg)).train_dataloader.dataset.dataset.type == 'CIFAR10'
    data_root = layout_root / 'digits_cifar10'
    log = run_tool('tools/train.py', cfg, '--work-dir', tmp_path / 'work', '--cfg-options',
                   'train_dataloader.dataset.dataset.type=UncheckedCIFAR10',
                   f'train_dataloader.dataset.dataset.data_root={data_root}',
                   'val_dataloader.dataset.type=UncheckedCIFAR10',
                   f'val_dataloader.dataset.data_root={data_root}',
                   timeout=300, env={'OMP_WAIT_POLICY': 'PASSIVE', 'OMP_NUM_THREADS': '1'})
    counts = long_tail_counts(50, 10, 10)
    assert f'{sum(counts)} of 500 images, per class {counts}' in log
    assert 'accuracy/top1' in log and (tmp_path / 'work' / 'iter_2.pth').is_file()
