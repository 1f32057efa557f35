"""Linear evaluation of a self-supervised checkpoint on a fraction of the labels.

    python tools/linear_eval.py CONFIG CHECKPOINT [--labels 1%] [--finetune] [--work-dir D]

The protocol, shared by every SSL method (mmpretrain's algorithms, SidAE, MCR, SER ...):

* the backbone of CONFIG's model is built and loaded from CHECKPOINT (``none``: the
  random initialisation) -- whatever wraps it (``MCR``'s ``algorithm.backbone``,
  ``RegularizedModel``'s ``architecture.backbone``, a plain algorithm's ``backbone``);
* the labelled train split is reduced to ``--labels`` (1% or 100%; class-balanced,
  drawn once from ``--seed``, so every method sees the same images; the indices are
  written to the work dir);
* **frozen** (default): features of the un-augmented images (resized to ``size``,
  normalized with the model's data preprocessor, BN in eval mode, last stage
  average-pooled) are extracted once, and a linear classifier is trained on them with
  SGD lr 0.05, momentum 0.9, batch 256, 50 epochs, cosine schedule, features
  standardized with the training statistics; **--finetune** trains backbone and
  classifier end to end with the same optimizer;
* top-1 accuracy on the val split is printed and written to
  ``WORK_DIR/linear_eval_<labels>_<mode>.json``.

Data: CONFIG's ``linear_eval = dict(train=<dataset>, val=<dataset>, size=32)`` (the
pipeline is added here: load if needed, gray -> 3 channels, resize to ``size``, pack),
or, without one, the pre-training dataset with ``split='train'`` / ``'val'`` (ImageNet
layouts) or ``'test'`` (CIFAR, MNIST). Images are held in memory as uint8: meant for
CIFAR-scale data; for ImageNet use mmpretrain's linear-evaluation benchmark configs.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
import sslreg  # noqa: E402,F401  (registers, applies compat)
from mmengine.config import Config, DictAction  # noqa: E402

from sslreg.evaluation.linear_probe import (extract_features, finetune, label_subset,  # noqa: E402
                                            pooled, train_linear_classifier)

IN_MEMORY_DATASETS = ('CIFAR10', 'CIFAR100', 'MNIST', 'FashionMNIST')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Linear evaluation on a fraction of the labels')
    p.add_argument('config', help='the pre-training config')
    p.add_argument('checkpoint', help="its checkpoint, or 'none' for the random init")
    p.add_argument('--labels', default='1%', help="fraction of the labels: '1%%', '100%%' "
                   "or a number in (0, 1]")
    p.add_argument('--finetune', action='store_true', help='train the backbone too')
    p.add_argument('--epochs', type=int, default=50)
    p.add_argument('--lr', type=float, default=0.05)
    p.add_argument('--momentum', type=float, default=0.9)
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--weight-decay', type=float, default=0.0)
    p.add_argument('--backbone-lr-mult', type=float, default=1.0,
                   help='backbone learning rate / classifier learning rate (--finetune)')
    p.add_argument('--seed', type=int, default=0, help='label subset and classifier seed')
    p.add_argument('--work-dir', help='where the JSON goes (default: next to the checkpoint)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def parse_fraction(text: str) -> float:
    text = str(text).strip()
    value = float(text[:-1]) / 100 if text.endswith('%') else float(text)
    if not 0 < value <= 1:
        raise SystemExit(f'--labels must be in (0, 1] or (0%, 100%], got {text}')
    return value


# --------------------------------------------------------------------------- model


def build_backbone(cfg, checkpoint):
    """(backbone, data_preprocessor, where) of CONFIG's model, the backbone loaded from
    ``checkpoint`` (or left at its initialisation for ``'none'``)."""
    from mmengine.registry import MODELS
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    _strip_pretrained(model_cfg)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    path = min((name for name, _ in model.named_modules()
                if name == 'backbone' or name.endswith('.backbone')),
               key=lambda name: name.count('.'), default=None)
    if path is None:
        raise SystemExit(f'{type(model).__name__} has no backbone to evaluate')
    backbone = model.get_submodule(path)
    if checkpoint.lower() != 'none':
        from mmengine.runner.checkpoint import _load_checkpoint
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        found = None
        for prefix in (path + '.', 'backbone.'):
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if sub:
                found = sub
                break
        if found is None:
            raise SystemExit(f'{checkpoint} has no weights under {path}. or backbone.; '
                             f'its keys start with {sorted({k.split(".")[0] for k in state})}')
        backbone.load_state_dict(found, strict=True)
    return backbone, model.data_preprocessor, path


def _strip_pretrained(node):
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            _strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _strip_pretrained(value)


def normalizer(data_preprocessor):
    """uint8 ``(N, C, H, W)`` -> the network's input, as the model's preprocessor does
    (channel flip, mean/std)."""
    flip = bool(getattr(data_preprocessor, '_channel_conversion', False))
    enabled = bool(getattr(data_preprocessor, '_enable_normalize', False))
    mean = getattr(data_preprocessor, 'mean', None)
    std = getattr(data_preprocessor, 'std', None)

    def normalize(x):
        x = x.float()
        if flip and x.shape[1] == 3:
            x = x[:, [2, 1, 0]]
        if enabled:
            x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        return x
    return normalize


# --------------------------------------------------------------------------- data


class _LoadIfNeeded:
    """LoadImageFromFile unless the dataset already gives ``img`` (CIFAR, MNIST)."""

    def __init__(self):
        from mmcv.transforms import LoadImageFromFile
        self.load = LoadImageFromFile()

    def __call__(self, results):
        return results if 'img' in results else self.load(results)


class _ThreeChannels:

    def __call__(self, results):
        img = results['img']
        if img.ndim == 2:
            results['img'] = np.repeat(img[..., None], 3, axis=2)
        return results


def eval_datasets(cfg):
    """(train, val) dataset configs and the image size."""
    spec = cfg.get('linear_eval')
    if spec:
        return dict(spec['train']), dict(spec['val']), int(spec.get('size', 32))
    base = cfg.train_dataloader.dataset.to_dict()
    base.pop('pipeline', None)
    if 'split' not in base:
        raise SystemExit('the config has no linear_eval = dict(train=..., val=..., size=...) '
                         'and its dataset has no split to switch; add linear_eval')
    val_split = 'test' if base['type'] in IN_MEMORY_DATASETS else 'val'
    return dict(base, split='train'), dict(base, split=val_split), 32


def load_images(dataset_cfg, size):
    """uint8 images ``(N, 3, size, size)`` and labels of a dataset."""
    from mmengine.registry import DATASETS
    dataset_cfg = dict(dataset_cfg)
    dataset_cfg.pop('pipeline', None)
    dataset_cfg['pipeline'] = [
        _LoadIfNeeded(), _ThreeChannels(),
        dict(type='Resize', scale=(size, size), backend='pillow'),
        dict(type='PackInputs')]
    dataset = DATASETS.build(dataset_cfg)
    images, labels = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        images.append(item['inputs'])
        labels.append(int(item['data_samples'].gt_label.reshape(-1)[0]))
    return torch.stack(images), torch.tensor(labels)


def batches(images, labels, normalize, batch_size=256):
    for i in range(0, images.shape[0], batch_size):
        yield dict(inputs=normalize(images[i:i + batch_size]),
                   data_samples=[dict(gt_label=int(y)) for y in labels[i:i + batch_size]])


# --------------------------------------------------------------------------- main


def run(args):
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    # init_weights reports every parameter at INFO level; keep warnings only.
    MMLogger.get_instance(f'linear_eval_{time.time_ns()}', log_level='WARNING')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    fraction = parse_fraction(args.labels)
    start = time.time()
    backbone, preprocessor, where = build_backbone(cfg, args.checkpoint)
    normalize = normalizer(preprocessor)
    train_cfg, val_cfg, size = eval_datasets(cfg)
    train_images, train_labels = load_images(train_cfg, size)
    val_images, val_labels = load_images(val_cfg, size)
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    subset = label_subset(train_labels, fraction, args.seed)
    x, y = train_images[subset], train_labels[subset]
    protocol = dict(epochs=args.epochs, lr=args.lr, momentum=args.momentum,
                    batch_size=args.batch_size, weight_decay=args.weight_decay, seed=args.seed)
    if args.finetune:
        feat_dim = pooled(backbone(normalize(x[:2]))).shape[1]
        model = finetune(backbone, num_classes, feat_dim, x, y, normalize,
                         backbone_lr_mult=args.backbone_lr_mult, **protocol)
        with torch.no_grad():
            preds = torch.cat([model(b['inputs']).argmax(1)
                               for b in batches(val_images, val_labels, normalize)])
    else:
        train_x, train_y = extract_features(backbone, batches(x, y, normalize))
        val_x, val_y = extract_features(backbone, batches(val_images, val_labels, normalize))
        clf = train_linear_classifier(train_x, train_y, num_classes, **protocol)
        with torch.no_grad():
            preds = clf(val_x).argmax(1)
    top1 = float((preds == val_labels).float().mean() * 100)
    mode = 'finetune' if args.finetune else 'frozen'
    result = dict(config=args.config, checkpoint=args.checkpoint, backbone=where, mode=mode,
                  label_fraction=fraction, num_labelled=int(subset.numel()),
                  num_train=int(train_labels.numel()), num_val=int(val_labels.numel()),
                  top1=top1, seconds=round(time.time() - start, 1), **protocol,
                  subset=subset.tolist())
    work_dir = args.work_dir or (osp.dirname(osp.abspath(args.checkpoint))
                                 if args.checkpoint.lower() != 'none' else '.')
    os.makedirs(work_dir, exist_ok=True)
    out = osp.join(work_dir, f'linear_eval_{fraction:g}_{mode}.json')
    with open(out, 'w') as f:
        json.dump(result, f, indent=1)
    print(f'linear eval ({mode} {where}, {fraction:.0%} of the labels = {subset.numel()} '
          f'images, seed {args.seed}): top-1 = {top1:.2f}% on {val_labels.numel()} images '
          f'-> {out}')
    return result


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
