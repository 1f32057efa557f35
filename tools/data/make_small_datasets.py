#!/usr/bin/env python
"""Make the small real-image data sets that sslreg's configs, demos and tests run on.

    python tools/data/make_small_datasets.py [--out data/small]
                                             [--only cub,imagenet,coco,fundus,...]
                                             [--force]

``make data`` runs it; the configs read ``data/small/<name>`` (git ignores ``data/``).
``--only`` also takes single fundus sets: drive, stare, chase_db1, hrf; and cifar10,
cifar100, svhn (digits_cifar10, digits_cifar100, digits_svhn; all in the default).

Everything is made from images that installed packages ship, so nothing is downloaded:

* scikit-learn's ``load_digits``: 1,797 real hand-written digits, 8x8 grey, 10 classes.
  Each is upscaled with bicubic interpolation to 32x32, stretched from 0..16 to 0..255 and
  saved as a 3-channel RGB PNG (white ink on black, as in the source).
* scikit-image's ``data.retina()``: one real colour fundus photograph, 1411x1411 RGB.

The digits are split once, stratified by class with a fixed seed, into a *train pool*
(1,200 digits) and a *test pool* (597). Training splits below draw only from the train
pool, test/val splits only from the test pool: no test digit is in any training set (e.g.
SSL pre-training on digits_imagenet/train, then evaluating on digits_cub's test split, does
not leak).

Data sets (each a directory under --out)
----------------------------------------
digits_cub/        the CUB_200_2011 layout read by ``mmpretrain.datasets.CUB``
    images/<NNN>.digit_<d>/digit_<d>_<idx>.png  32x32 RGB; NNN = d + 1 (001..010), idx =
                                                the digit's index in load_digits
    images.txt              "<id> <path relative to images/>", ids 1..900, class by class
    image_class_labels.txt  "<id> <label 1..10>"
    train_test_split.txt    "<id> <1 train | 0 test>": 600 train (60/class), 300 test (30/class)
    classes.txt             "<label> <NNN.digit_d>" (as CUB ships it; the loader never reads it)
    CUB's METAINFO holds the 200 bird names; pass ``metainfo=dict(classes=DIGIT_CLASSES)``
    for the right names (labels and accuracy do not depend on it).
digits_imagenet/   the ImageNet layout read by ``mmpretrain.datasets.ImageNet``/``CustomDataset``
    train/digit_<d>/digit_<d>_<idx>.png   1,200 images (the train pool), 32x32 RGB
    val/digit_<d>/digit_<d>_<idx>.png     597 images (the test pool)
    meta/train.txt, meta/val.txt          "digit_<d>/digit_<d>_<idx>.png <label 0..9>",
                                          relative to train/ resp. val/
    ``ImageNet(split='train')`` finds meta/train.txt and reads it. Folder scanning
    (``data_prefix='train'``, no ann_file) works with CustomDataset, which names the classes
    after the folders; ImageNet would assert that 10 folders != its 1,000 METAINFO classes
    unless given ``metainfo=dict(classes=DIGIT_CLASSES)``.
digits_coco/       the COCO layout read by ``mmdet.datasets.CocoDataset``
    train2017/000000000001.png ...   160 images, 128x128 RGB
    val2017/000000001001.png ...     40 images
    annotations/instances_train2017.json, annotations/instances_val2017.json
    Each image: a textured, noisy, darkish background (smooth colour field, soft blobs,
    pixel noise) with 1-4 non-overlapping digits, 16-48 px, pasted in a brighter ink colour
    with the digit's intensity as opacity. Categories: ids 1..10 named '0'..'9' (configs:
    ``metainfo=dict(classes=DIGIT_COCO_CLASSES)``). Instance mask = the pasted digit's pixels
    of opacity >= 0.4, holes filled; bbox = the tight [x, y, w, h] box of that mask;
    segmentation = its outer polygons (pycocotools rasterises them back to the
    mask but for the odd pixel where two pixels touch only at a corner, so Mask R-CNN can
    train); area = the area of that rasterised segmentation, as in COCO; iscrowd 0.
digits_cifar10/    CIFAR-10's python layout (mmpretrain ``CIFAR10``'s files)
    cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta: 500 train (50/class,
    100 a batch) / 200 test (20/class) 32x32 RGB digits, classes shuffled together,
    label_names '0'..'9'. The files' md5s are not CIFAR's, which mmpretrain's CIFAR10
    checks: read them with sslreg's ``UncheckedCIFAR10`` (``--cfg-options
    train_dataloader.dataset.type=UncheckedCIFAR10``).
digits_cifar100/   CIFAR-100's python layout: cifar-100-python/train, test, meta, the same
    digits; fine_labels = the digit (0..9 of the 100), coarse_labels = CIFAR-100's
    superclass of that fine label (``CIFAR100_FINE_TO_COARSE``; digits 6 and 7 share one).
    Read with ``UncheckedCIFAR100`` or ``CIFAR100Coarse(check_md5=False)``.
digits_svhn/       SVHN's train_32x32.mat / test_32x32.mat (X uint8 (32, 32, 3, N), y (N, 1),
    the digit 0 stored as 10), the same digits; read by sslreg's ``SVHN``.
    The three are written by sslreg/datasets/layouts.py (``write_cifar10``,
    ``write_cifar100``, ``write_svhn``; tests call them on their own arrays).
DRIVE/, STARE/, CHASE_DB1/, HRF/   fundus vessel segmentation in mmseg 1.x's layout
    images/{training,validation}/<name>.png           RGB crops of the retina photograph
    annotations/{training,validation}/<name><suffix>  single-channel 8-bit PNG, 0 background,
                                                       1 vessel (what mmseg's converters write)
    each 8 training + 4 validation images:
    DRIVE      160x160  '21.png' .. '28.png' / '01'..'04', labels '21_manual1.png'
    STARE      160x160  'im0001.png' .., labels 'im0001.ah.png'
    CHASE_DB1  192x192  'Image_01L.png', 'Image_01R.png' .., labels 'Image_01L_1stHO.png'
                        (the 'R' images are mirrored crops: a plausible fellow eye)
    HRF        256x256  '01_dr.png', '01_g.png', '01_h.png' .., labels with the same names
                        in annotations/ (as mmseg's HRF converter writes); '_g' mirrored
    Crops are taken at half resolution (the photograph resized to 706x706 by area
    averaging) from windows mostly inside the field of view, clear of the optic disc, with
    8-16 % vessel pixels inside the field of view.
    THE VESSEL LABELS ARE MADE BY A FILTER, NOT BY EXPERT ANNOTATORS: green channel ->
    CLAHE -> Sato tubeness filter for dark ridges (sigmas 1, 1.5, 2 px) -> threshold at the
    88th percentile inside the field of view (eroded by 6 px against the rim) -> connected
    specks of <= 40 px removed. They follow the visible vessel tree closely but miss the
    faintest capillaries: good for checking that a pipeline runs and learns, not for
    reporting vessel-segmentation numbers.

Each data set is built in a temporary directory beside its target and renamed into place
only when complete, with a ``.complete`` marker (who made it, generator version, summary).
A data set whose marker is current is skipped unless --force; one with an older marker is
rebuilt; an existing directory without the marker is not this script's (it could be a real
data set) and is never touched: the script stops with an error. All randomness uses fixed
seeds: two runs write byte-identical files.
"""
import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / 'data' / 'small'
MARKER = '.complete'
MARKER_HEAD = 'made by tools/data/make_small_datasets.py'
GENERATOR_VERSION = 2

DIGIT_SIZE = 32
DIGIT_CLASSES = tuple(f'digit_{d}' for d in range(10))  # ImageNet folders, class names
DIGIT_CUB_DIRS = tuple(f'{d + 1:03d}.digit_{d}' for d in range(10))
DIGIT_COCO_CLASSES = tuple(str(d) for d in range(10))
N_TEST_POOL = 597            # the rest (1,200) is the train pool

CUB_TRAIN_PER_CLASS = 60
CUB_TEST_PER_CLASS = 30

LAYOUT_TRAIN_PER_CLASS = 50  # digits_cifar10, digits_cifar100, digits_svhn
LAYOUT_TEST_PER_CLASS = 20

COCO_SIZE = 128
COCO_N_TRAIN = 160
COCO_N_VAL = 40
COCO_DIGIT_MIN, COCO_DIGIT_MAX = 16, 48
COCO_MASK_THR = 0.4

FUNDUS_SPECS = {  # data set -> label suffix, crop (H, W), names, which names are mirrored
    'DRIVE': dict(seg_suffix='_manual1.png', hw=(160, 160),
                  train=[str(i) for i in range(21, 29)],
                  val=[f'{i:02d}' for i in range(1, 5)], mirror=None),
    'STARE': dict(seg_suffix='.ah.png', hw=(160, 160),
                  train=[f'im{i:04d}' for i in range(1, 9)],
                  val=[f'im{i:04d}' for i in range(9, 13)], mirror=None),
    'CHASE_DB1': dict(seg_suffix='_1stHO.png', hw=(192, 192),
                      train=[f'Image_{i:02d}{s}' for i in range(1, 5) for s in 'LR'],
                      val=[f'Image_{i:02d}{s}' for i in range(5, 7) for s in 'LR'],
                      mirror='R'),
    'HRF': dict(seg_suffix='.png', hw=(256, 256),
                train=[f'{i:02d}_{k}' for i in (1, 2, 3) for k in ('dr', 'g', 'h')][:8],
                val=[f'{i:02d}_{k}' for i in (3, 4) for k in ('dr', 'g', 'h')][2:6],
                mirror='_g'),
}
FUNDUS_SEEDS = {'DRIVE': 11, 'STARE': 12, 'CHASE_DB1': 13, 'HRF': 14}
FUNDUS_HALF = 706            # the 1411 px photograph is processed at this size
FOV_ERODE = 6                # px: keeps the filter's response to the rim out of the labels
VESSEL_SIGMAS = (1.0, 1.5, 2.0)
VESSEL_PERCENTILE = 88.0
VESSEL_MAX_SPECK = 40        # connected components of <= this many pixels are dropped
CROP_VESSEL_FRAC = (0.08, 0.16)

GROUPS = {
    'cub': ('digits_cub',), 'imagenet': ('digits_imagenet',), 'coco': ('digits_coco',),
    'fundus': tuple(FUNDUS_SPECS),
    'drive': ('DRIVE',), 'stare': ('STARE',), 'chase_db1': ('CHASE_DB1',), 'hrf': ('HRF',),
    'cifar10': ('digits_cifar10',), 'cifar100': ('digits_cifar100',),
    'svhn': ('digits_svhn',),
}
DEFAULT_ONLY = ('cub', 'imagenet', 'coco', 'fundus', 'cifar10', 'cifar100', 'svhn')


# ----------------------------------------------------------------------------- helpers
def _save_png(arr, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(path, format='PNG')


def _write_lines(path, lines):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{ln}\n' for ln in lines))


def _marker_text(name, summary):
    return (f'{MARKER_HEAD}\nversion {GENERATOR_VERSION}\n'
            + json.dumps(dict(dataset=name, **summary), indent=1) + '\n')


def _marker_state(final):
    """'current', 'old' (made by an earlier version of this script), 'foreign' (exists,
    not ours) or 'missing'."""
    marker = final / MARKER
    if marker.is_file():
        lines = marker.read_text().splitlines()
        if lines and lines[0] == MARKER_HEAD:
            return 'current' if lines[1:2] == [f'version {GENERATOR_VERSION}'] else 'old'
        return 'foreign'
    return 'foreign' if final.exists() else 'missing'


def _build_atomically(out, name, force, build):
    """``build(tmp_dir) -> summary`` in a temporary directory, renamed to out/name when it
    is complete. A directory without our marker is never replaced."""
    out = Path(out)
    final = out / name
    state = _marker_state(final)
    if state == 'foreign':
        raise SystemExit(f'{final} exists and was not made by this script (no {MARKER} '
                         'marker of it): not touching it; move it away or pick another --out')
    if state == 'current' and not force:
        print(f'[skip] {final} (complete; --force rebuilds it)')
        return final
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=out))
    try:
        summary = build(tmp)
        (tmp / MARKER).write_text(_marker_text(name, summary))
        if final.exists():  # ours: an older version, or --force
            old = Path(tempfile.mkdtemp(prefix=f'.{name}.old-', dir=out))
            os.rename(final, old / name)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shown = ', '.join(f'{k}={v}' for k, v in summary.items() if k != 'windows_yx_at_706px')
    print(f'[wrote] {final} ({time.time() - t0:.1f}s): {shown}')
    return final


# ----------------------------------------------------------------------------- digits
def _upscale(img8, size):
    """8x8 digit (0..16) -> (size, size) float in [0, 1], bicubic."""
    from skimage.transform import resize
    big = resize(img8.astype(np.float64) / 16.0, (size, size), order=3, mode='edge',
                 anti_aliasing=False)
    return np.clip(big, 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def load_digits_raw():
    """(images (1797, 8, 8) float 0..16, labels (1797,) int)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images, d.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def load_digit_images():
    """All 1,797 digits upscaled: uint8 (N, 32, 32) in 0..255, and labels (N,)."""
    raw, y = load_digits_raw()
    imgs = np.stack([_upscale(im, DIGIT_SIZE) for im in raw])
    return np.round(imgs * 255).astype(np.uint8), y


@functools.lru_cache(maxsize=None)
def digit_pools():
    """Stratified split of the digit indices into (train_pool, test_pool), each in a fixed
    shuffled order; the test pool has N_TEST_POOL digits, classes in proportion."""
    _, y = load_digits_raw()
    counts = np.bincount(y, minlength=10)
    want = counts * N_TEST_POOL / len(y)
    n_test = np.floor(want).astype(int)
    for c in np.argsort(-(want - n_test), kind='stable')[:N_TEST_POOL - n_test.sum()]:
        n_test[c] += 1  # largest remainders
    rng = np.random.RandomState(0)
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        test.extend(idx[:n_test[c]])
        train.extend(idx[n_test[c]:])
    train = np.array(train)[rng.permutation(len(train))]
    test = np.array(test)[rng.permutation(len(test))]
    return train, test


def _rgb(gray):
    return np.repeat(gray[..., None], 3, axis=2)


def _first_per_class(pool, y, n):
    return [i for c in range(10) for i in [j for j in pool if y[j] == c][:n]]


def make_digits_cub(out=DEFAULT_OUT, force=False):
    """digits_cub: the CUB_200_2011 layout, 600 train / 300 test 32x32 digits."""
    def build(root):
        imgs, y = load_digit_images()
        train_pool, test_pool = digit_pools()
        items = ([(int(i), 1) for i in _first_per_class(train_pool, y, CUB_TRAIN_PER_CLASS)]
                 + [(int(i), 0) for i in _first_per_class(test_pool, y, CUB_TEST_PER_CLASS)])
        items.sort(key=lambda t: (y[t[0]], t[0]))  # CUB lists its images class by class
        images, labels, split = [], [], []
        for k, (i, is_train) in enumerate(items, start=1):
            c = int(y[i])
            rel = f'{DIGIT_CUB_DIRS[c]}/digit_{c}_{i:04d}.png'
            _save_png(_rgb(imgs[i]), root / 'images' / rel)
            images.append(f'{k} {rel}')
            labels.append(f'{k} {c + 1}')
            split.append(f'{k} {is_train}')
        _write_lines(root / 'images.txt', images)
        _write_lines(root / 'image_class_labels.txt', labels)
        _write_lines(root / 'train_test_split.txt', split)
        _write_lines(root / 'classes.txt', [f'{c + 1} {n}' for c, n in enumerate(DIGIT_CUB_DIRS)])
        n_train = sum(s for _, s in items)
        return dict(train=n_train, test=len(items) - n_train, classes=10,
                    image_size=f'{DIGIT_SIZE}x{DIGIT_SIZE}')
    return _build_atomically(out, 'digits_cub', force, build)


def make_digits_imagenet(out=DEFAULT_OUT, force=False):
    """digits_imagenet: ImageNet folders train/ val/ and meta/{train,val}.txt."""
    def build(root):
        imgs, y = load_digit_images()
        counts = {}
        for split, pool in zip(('train', 'val'), digit_pools()):
            lines = []
            for i in sorted(int(i) for i in pool):
                c = int(y[i])
                rel = f'{DIGIT_CLASSES[c]}/{DIGIT_CLASSES[c]}_{i:04d}.png'
                _save_png(_rgb(imgs[i]), root / split / rel)
                lines.append(f'{rel} {c}')
            _write_lines(root / 'meta' / f'{split}.txt', lines)
            counts[split] = len(lines)
        return dict(**counts, classes=10, image_size=f'{DIGIT_SIZE}x{DIGIT_SIZE}')
    return _build_atomically(out, 'digits_imagenet', force, build)


# ----------------------------------------------------------------------------- CIFAR, SVHN
@functools.lru_cache(maxsize=None)
def layouts():
    """sslreg/datasets/layouts.py, the writers of the CIFAR and SVHN layouts (numpy and
    scipy only), loaded by its path: no OpenMMLab import for making data."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'sslreg_layouts', REPO_ROOT / 'sslreg' / 'datasets' / 'layouts.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layout_splits():
    """(train, test) = ((images (N, 32, 32, 3), digits), ...): LAYOUT_TRAIN_PER_CLASS /
    LAYOUT_TEST_PER_CLASS digits a class from the train / test pool, in a fixed shuffled
    order (as CIFAR's batches mix the classes)."""
    imgs, y = load_digit_images()
    rng = np.random.RandomState(10)
    out = []
    for pool, n in zip(digit_pools(), (LAYOUT_TRAIN_PER_CLASS, LAYOUT_TEST_PER_CLASS)):
        idx = np.array(_first_per_class(pool, y, n))
        idx = idx[rng.permutation(len(idx))]
        out.append((np.repeat(imgs[idx][..., None], 3, axis=3), y[idx]))
    return out


def _layout_summary(train, test, **extra):
    return dict(train=len(train[1]), test=len(test[1]), classes=10,
                image_size=f'{DIGIT_SIZE}x{DIGIT_SIZE}', **extra)


def make_digits_cifar10(out=DEFAULT_OUT, force=False):
    """digits_cifar10: CIFAR-10's python layout (cifar-10-batches-py/)."""
    def build(root):
        train, test = _layout_splits()
        layouts().write_cifar10(root, train, test, label_names=DIGIT_COCO_CLASSES)
        return _layout_summary(train, test, reader='UncheckedCIFAR10 (md5s are not CIFAR\'s)')
    return _build_atomically(out, 'digits_cifar10', force, build)


def make_digits_cifar100(out=DEFAULT_OUT, force=False):
    """digits_cifar100: CIFAR-100's python layout (cifar-100-python/); fine label = the
    digit, coarse label = CIFAR-100's superclass of that fine label."""
    def build(root):
        lay = layouts()
        (tr_x, tr_y), (te_x, te_y) = _layout_splits()
        coarse = np.array(lay.CIFAR100_FINE_TO_COARSE)
        fine_names = list(DIGIT_CLASSES) + [f'unused_{c}' for c in range(10, 100)]
        lay.write_cifar100(root, (tr_x, tr_y, coarse[tr_y]), (te_x, te_y, coarse[te_y]),
                           fine_label_names=fine_names,
                           coarse_label_names=lay.CIFAR100_COARSE_CATEGORIES)
        return _layout_summary((tr_x, tr_y), (te_x, te_y),
                               coarse_classes_used=len(set(coarse[tr_y].tolist())),
                               reader='UncheckedCIFAR100, CIFAR100Coarse(check_md5=False)')
    return _build_atomically(out, 'digits_cifar100', force, build)


def make_digits_svhn(out=DEFAULT_OUT, force=False):
    """digits_svhn: SVHN's train_32x32.mat / test_32x32.mat (digit 0 stored as 10)."""
    def build(root):
        train, test = _layout_splits()
        layouts().write_svhn(root, 'train', *train)
        layouts().write_svhn(root, 'test', *test)
        return _layout_summary(train, test, reader='SVHN')
    return _build_atomically(out, 'digits_svhn', force, build)


# ----------------------------------------------------------------------------- coco
def _background(rng, size):
    """A darkish textured canvas: smooth colour field, soft blobs, pixel noise."""
    import cv2
    base = rng.uniform(40, 120, size=3)
    coarse = rng.normal(0, 1, (size // 16, size // 16, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    img = base + smooth * (30.0 / (smooth.std() + 1e-8))
    yy, xx = np.mgrid[:size, :size]
    for _ in range(rng.randint(2, 6)):  # unlabelled distractors
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(4, 20)
        w = 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - w) + rng.uniform(0, 170, 3) * w
    return img + rng.normal(0, 10, img.shape)


def _mask_polygons(mask, x0=0, y0=0):
    """Outer polygons (COCO [x1, y1, x2, y2, ...]) of a hole-free bool mask whose pixel
    (0, 0) sits at image pixel (x0, y0). Contours at level 0.5 shifted by +0.5 px (COCO's
    pixel i spans [i, i+1]), simplified by 0.3 px, rasterise back to exactly the mask with
    pycocotools (the tests check it)."""
    import cv2
    from skimage import measure
    polys = []
    for c in measure.find_contours(np.pad(mask, 1).astype(np.float64), 0.5):
        c = cv2.approxPolyDP(c[:, ::-1].astype(np.float32), 0.3, True)[:, 0, :]
        xy = c.astype(np.float64) + (x0 - 0.5, y0 - 0.5)  # -1 for the pad, +0.5 for COCO
        if len(xy) >= 3:
            polys.append([round(float(v), 2) for v in xy.ravel()])
    return polys


def _digit_mask(alpha):
    from scipy import ndimage
    mask = alpha >= COCO_MASK_THR
    lab, n = ndimage.label(mask)
    if n > 1:  # keep the strokes, drop interpolation specks
        sizes = ndimage.sum(mask, lab, range(1, n + 1))
        mask = np.isin(lab, 1 + np.flatnonzero(np.asarray(sizes) >= 4))
    return ndimage.binary_fill_holes(mask)


def _coco_split(root, split, n_images, first_id, pool, rng):
    import pycocotools.mask as mask_util
    raw, y = load_digits_raw()
    images, anns = [], []
    cursor = 0
    for img_id in range(first_id, first_id + n_images):
        canvas = _background(rng, COCO_SIZE)
        placed = []
        for _ in range(rng.randint(1, 5)):
            s = int(rng.randint(COCO_DIGIT_MIN, COCO_DIGIT_MAX + 1))
            for _try in range(50):  # a spot 1 px clear of the digits placed so far
                x0 = int(rng.randint(0, COCO_SIZE - s + 1))
                y0 = int(rng.randint(0, COCO_SIZE - s + 1))
                if all(x0 + s < px or px + ps < x0 or y0 + s < py or py + ps < y0
                       for px, py, ps in placed):
                    break
            else:
                continue
            i = int(pool[cursor % len(pool)])
            cursor += 1
            alpha = _upscale(raw[i], s)
            mask = _digit_mask(alpha)
            if mask.sum() < 8:
                continue
            placed.append((x0, y0, s))
            region = canvas[y0:y0 + s, x0:x0 + s]
            ink_lum = max(region.mean() + 90, rng.uniform(200, 240))
            ink = np.clip(ink_lum + rng.uniform(-30, 30, 3), 0, 255)
            a = alpha[..., None]
            canvas[y0:y0 + s, x0:x0 + s] = region * (1 - a) + ink * a
            full = np.zeros((COCO_SIZE, COCO_SIZE), bool)
            full[y0:y0 + s, x0:x0 + s] = mask
            rows, cols = np.flatnonzero(full.any(1)), np.flatnonzero(full.any(0))
            bx, by = int(cols[0]), int(rows[0])
            polys = _mask_polygons(mask, x0, y0)
            area = mask_util.area(mask_util.merge(
                mask_util.frPyObjects(polys, COCO_SIZE, COCO_SIZE)))
            anns.append(dict(
                id=len(anns) + 1 + first_id * 10, image_id=img_id,
                category_id=int(y[i]) + 1,
                bbox=[bx, by, int(cols[-1]) + 1 - bx, int(rows[-1]) + 1 - by],
                area=int(area), iscrowd=0, segmentation=polys))
        fname = f'{img_id:012d}.png'
        _save_png(np.clip(np.round(canvas), 0, 255).astype(np.uint8), root / split / fname)
        images.append(dict(id=img_id, file_name=fname, height=COCO_SIZE, width=COCO_SIZE,
                           license=1))
    doc = dict(
        info=dict(description=f'digits_coco {split}: scikit-learn digits pasted on textured '
                              'canvases (sslreg tools/data/make_small_datasets.py)',
                  version=str(GENERATOR_VERSION)),
        licenses=[dict(id=1, name='BSD-3-Clause (scikit-learn digits)', url='')],
        images=images, annotations=anns,
        categories=[dict(id=d + 1, name=str(d), supercategory='digit') for d in range(10)])
    path = root / 'annotations' / f'instances_{split}.json'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(',', ':')))
    return len(images), len(anns)


def make_digits_coco(out=DEFAULT_OUT, force=False):
    """digits_coco: the COCO layout, 160 train + 40 val 128x128 canvases."""
    def build(root):
        train_pool, test_pool = digit_pools()
        rng = np.random.RandomState(2017)
        n_tr, a_tr = _coco_split(root, 'train2017', COCO_N_TRAIN, 1, train_pool, rng)
        n_va, a_va = _coco_split(root, 'val2017', COCO_N_VAL, 1001, test_pool, rng)
        return dict(train_images=n_tr, train_instances=a_tr, val_images=n_va,
                    val_instances=a_va, image_size=f'{COCO_SIZE}x{COCO_SIZE}')
    return _build_atomically(out, 'digits_coco', force, build)


# ----------------------------------------------------------------------------- fundus
@functools.lru_cache(maxsize=None)
def fundus_maps():
    """The retina photograph at half resolution and the maps made from it: dict(image=
    (706, 706, 3) uint8, vessels=bool, fov=bool (eroded field of view), disc=(cy, cx, r))."""
    import cv2
    from scipy import ndimage
    from skimage import data, exposure, filters, morphology
    img = cv2.resize(data.retina(), (FUNDUS_HALF, FUNDUS_HALF), interpolation=cv2.INTER_AREA)
    fov = ndimage.binary_fill_holes(img.astype(np.int32).sum(-1) > 60)
    fov = ndimage.binary_erosion(fov, structure=morphology.disk(FOV_ERODE))
    green = exposure.equalize_adapthist(img[..., 1].astype(np.float64) / 255.0,
                                        clip_limit=0.01)
    tube = filters.sato(green, sigmas=VESSEL_SIGMAS, black_ridges=True)
    vessels = (tube > np.percentile(tube[fov], VESSEL_PERCENTILE)) & fov
    vessels = morphology.remove_small_objects(vessels, max_size=VESSEL_MAX_SPECK)
    # the optic disc: the brightest smooth spot in the field of view
    lum = ndimage.gaussian_filter(img.astype(np.float64).mean(-1), 12)
    lum[~fov] = 0
    cy, cx = np.unravel_index(np.argmax(lum), lum.shape)
    radius = 0.16 * np.sqrt(fov.sum() / np.pi)
    return dict(image=img, vessels=vessels, fov=fov, disc=(int(cy), int(cx), float(radius)))


def _iou(a, b, hw):
    h, w = hw
    inter = (max(0, min(a[0], b[0]) + h - max(a[0], b[0]))
             * max(0, min(a[1], b[1]) + w - max(a[1], b[1])))
    return inter / (2 * h * w - inter)


def pick_windows(maps, hw, n, seed, fov_min=0.85, max_iou=0.25, stride=4):
    """n top-left corners (y, x) of hw windows, drawn with a fixed seed among those mostly
    inside the field of view, clear of the optic disc, with a realistic vessel fraction and
    little overlap (the overlap cap is relaxed only if n cannot be met)."""
    h, w = hw
    cy, cx, r = maps['disc']

    def integral(a):
        return np.pad(a.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    fi, vi = integral(maps['fov']), integral(maps['vessels'])
    H, W = maps['fov'].shape
    Y, X = np.meshgrid(np.arange(0, H - h + 1, stride), np.arange(0, W - w + 1, stride),
                       indexing='ij')

    def box_sum(ii):
        return ii[Y + h, X + w] - ii[Y, X + w] - ii[Y + h, X] + ii[Y, X]

    n_fov, n_ves = box_sum(fi), box_sum(vi)
    frac = n_ves / np.maximum(n_fov, 1)
    dy = np.maximum(np.maximum(Y - cy, cy - (Y + h)), 0)  # disc centre to the window
    dx = np.maximum(np.maximum(X - cx, cx - (X + w)), 0)
    ok = ((n_fov >= fov_min * h * w) & (frac >= CROP_VESSEL_FRAC[0])
          & (frac <= CROP_VESSEL_FRAC[1]) & (dy ** 2 + dx ** 2 > (r + 8) ** 2))
    cand = [(int(a), int(b)) for a, b in zip(Y[ok], X[ok])]
    if len(cand) < n:
        raise RuntimeError(f'only {len(cand)} usable {hw} windows in the photograph')
    cand = [cand[k] for k in np.random.RandomState(seed).permutation(len(cand))]
    chosen = []
    for cap in (max_iou, max_iou + 0.15, max_iou + 0.3, 0.99):
        for c in cand:
            if len(chosen) < n and c not in chosen and \
                    all(_iou(c, o, hw) <= cap for o in chosen):
                chosen.append(c)
    return chosen


def make_fundus(name, out=DEFAULT_OUT, force=False):
    """One of DRIVE, STARE, CHASE_DB1, HRF: mmseg's layout, filter-made vessel labels."""
    spec = FUNDUS_SPECS[name]

    def build(root):
        maps = fundus_maps()
        hw = spec['hw']
        names = ([('training', n) for n in spec['train']]
                 + [('validation', n) for n in spec['val']])
        large = hw[0] * hw[1] > 50000
        wins = pick_windows(maps, hw, len(names), FUNDUS_SEEDS[name],
                            fov_min=0.75 if large else 0.85, max_iou=0.4 if large else 0.25)
        fracs = []
        for (split, stem), (y0, x0) in zip(names, wins):
            win = np.s_[y0:y0 + hw[0], x0:x0 + hw[1]]
            img, ves, fov = maps['image'][win], maps['vessels'][win], maps['fov'][win]
            fracs.append(float(ves[fov].mean()))
            if spec['mirror'] and stem.endswith(spec['mirror']):
                img, ves = img[:, ::-1], ves[:, ::-1]
            _save_png(img, root / 'images' / split / f'{stem}.png')
            _save_png(ves.astype(np.uint8),
                      root / 'annotations' / split / f'{stem}{spec["seg_suffix"]}')
        return dict(training=len(spec['train']), validation=len(spec['val']),
                    image_size=f'{hw[0]}x{hw[1]}',
                    vessel_fraction_in_fov=f'{min(fracs):.3f}..{max(fracs):.3f}',
                    labels='vesselness filter (Sato), not expert annotations',
                    windows_yx_at_706px=[list(v) for v in wins])
    return _build_atomically(out, name, force, build)


def make_drive(out=DEFAULT_OUT, force=False):
    return make_fundus('DRIVE', out, force)


def make_stare(out=DEFAULT_OUT, force=False):
    return make_fundus('STARE', out, force)


def make_chase_db1(out=DEFAULT_OUT, force=False):
    return make_fundus('CHASE_DB1', out, force)


def make_hrf(out=DEFAULT_OUT, force=False):
    return make_fundus('HRF', out, force)


MAKERS = {
    'digits_cub': make_digits_cub, 'digits_imagenet': make_digits_imagenet,
    'digits_coco': make_digits_coco,
    'digits_cifar10': make_digits_cifar10, 'digits_cifar100': make_digits_cifar100,
    'digits_svhn': make_digits_svhn,
    **{n: functools.partial(make_fundus, n) for n in FUNDUS_SPECS},
}


def make(out=DEFAULT_OUT, only=DEFAULT_ONLY, force=False):
    """Make the data sets of ``only`` (names of GROUPS, an iterable or a comma-separated
    string) under ``out``; returns their directories. Exits (SystemExit) on an unknown name
    or on a directory this script did not make."""
    if isinstance(only, str):
        only = only.split(',')
    keys = [k.strip().lower() for k in only if k.strip()]
    unknown = sorted(set(keys) - set(GROUPS))
    if unknown:
        raise SystemExit(f'unknown data set(s) {unknown}; choose from {sorted(GROUPS)}')
    names = [n for n in MAKERS if any(n in GROUPS[k] for k in keys)]  # a fixed order
    return [MAKERS[n](out, force) for n in names]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=str(DEFAULT_OUT),
                   help='parent directory of the data sets (default: <repo>/data/small)')
    p.add_argument('--only', default=','.join(DEFAULT_ONLY),
                   help=f'comma-separated subset of {",".join(GROUPS)} (default: '
                        f'{",".join(DEFAULT_ONLY)}, i.e. all)')
    p.add_argument('--force', action='store_true', help='rebuild complete data sets too')
    args = p.parse_args(argv)
    t0 = time.time()
    make(args.out, args.only, args.force)
    print(f'done in {time.time() - t0:.1f}s under {Path(args.out).resolve()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
