"""Evaluation of a self-supervised checkpoint: the papers' protocols on frozen features,
on a fraction of the labels, or fine-tuned.

    python tools/linear_eval.py CONFIG CHECKPOINT [--protocol-config configs/eval/P.py]
        [--protocol-options KEY=VALUE ...] [--labels 1%] [--finetune] [--epochs N] ...
        [--work-dir D] [--cfg-options KEY=VALUE ...]

CONFIG is the pre-training config (it gives the model and, by default, the data);
CHECKPOINT its checkpoint (``none``: the random initialisation). The protocol comes from
``--protocol-config`` (a plain Python file read with mmengine's ``Config``; see
``configs/eval/``), then from explicit command-line flags, which win:

``protocol = dict(name, paper, dataset, mode, labels, features, epochs, lr, ...)``

* ``mode``: ``'frozen'`` (a linear classifier on features extracted once, default),
  ``'finetune'`` (backbone + linear classifier trained end to end) or ``'knn'``
  (k-nearest neighbours of frozen features, :mod:`sslreg.evaluation.knn`; ``knn=dict(k=5,
  metric='cosine', vote='majority', temperature=0.07)``);
* ``labels``: the fraction of the labelled train split used ('1%', '10%', '100%' or a
  number in (0, 1]); class-balanced, ``max(1, round(fraction * n_c))`` per class, drawn
  once from ``seed`` (:func:`~sslreg.evaluation.linear_probe.label_subset`), so every
  method sees the same images; the indices go into the JSON. For ``knn`` it is the
  memory bank;
* ``features``: ``dict(type='pooled')`` (the backbone's last output, maps average-pooled:
  ResNets) or ``dict(type='last_blocks_cls', num_blocks=4, norm_each=False)`` (SER's /
  DINO's [CLS] tokens of the last 4 blocks concatenated; ViT / ``LateClsViT``);
* classifier (``frozen`` and ``finetune``): ``optimizer`` ``'sgd'`` (``'adamw'``: AdamW,
  decoupled ``weight_decay``, momentum unused), ``lr`` 0.05, ``momentum`` 0.9,
  ``batch_size`` 256, ``weight_decay`` 0, ``epochs`` 50, per-iteration cosine after
  ``warmup_epochs`` (0) of linear warm-up (``lr_steps=(4, 8, 12)``: x0.1 steps at those
  epochs instead; ``nesterov`` False), features ``standardize``d with the training
  statistics (``frozen``); ``backbone_lr_mult`` (``finetune``);
* ``name``, ``paper``, ``dataset``: written into the result (``dataset`` names the
  paper's dataset for the protocol).

Without ``--protocol-config`` the defaults are the above (``labels='1%'``, ``frozen``,
``pooled``), as before. Top-1 accuracy on the val split is printed and written to
``WORK_DIR/linear_eval_<name>.json`` (``linear_eval_<labels>_<mode>.json`` without a
protocol name).

Data: CONFIG's ``linear_eval = dict(train=<dataset>, val=<dataset>, size=32,
resize_short=None)``, or, for a split it does not name, the pre-training dataset with
``split='train'`` / ``'val'`` (ImageNet layouts) or ``'test'`` (CIFAR, MNIST); then the
protocol config's own ``linear_eval``: a dataset dict with a ``type`` replaces that split
(so a protocol can name its dataset, e.g. ImageNet), one without updates it
(``linear_eval.val.indices=64``), ``size`` / ``resize_short`` replace (``resize_short=256``
resizes the short side and centre-crops ``size``; without it images are resized to
``size`` x ``size``; 32 px by default). Gray images get 3 channels; the model's data preprocessor
normalizes. Features (``frozen``, ``knn``) are extracted batch by batch
(``--num-workers`` loaders) and only they are held in memory; ``finetune`` holds the
labelled subset's uint8 images. No augmentation is used: features are computed once.
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

from sslreg.evaluation.knn import knn_predict  # noqa: E402
from sslreg.evaluation.linear_probe import (extract_features, feature_extractor,  # noqa: E402
                                            finetune, label_subset, train_linear_classifier)

IN_MEMORY_DATASETS = ('CIFAR10', 'CIFAR100', 'MNIST', 'FashionMNIST')
MODES = ('frozen', 'finetune', 'knn')
# The protocol without --protocol-config (the tool's historical defaults).
DEFAULT_PROTOCOL = dict(
    name=None, paper=None, dataset=None, mode='frozen', labels='1%',
    features=dict(type='pooled'), epochs=50, lr=0.05, momentum=0.9, batch_size=256,
    weight_decay=0.0, warmup_epochs=0, lr_steps=(), nesterov=False, standardize=True,
    backbone_lr_mult=1.0, seed=0, optimizer='sgd',
    knn=dict(k=5, metric='cosine', vote='majority', temperature=0.07))
# command-line flag -> protocol key (a flag given explicitly wins over the protocol config)
FLAGS = dict(labels='labels', epochs='epochs', lr='lr', momentum='momentum',
             batch_size='batch_size', weight_decay='weight_decay',
             backbone_lr_mult='backbone_lr_mult', seed='seed')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Evaluation protocols: linear / fine-tune / kNN '
                                'on a fraction of the labels')
    p.add_argument('config', help='the pre-training config')
    p.add_argument('checkpoint', help="its checkpoint, or 'none' for the random init")
    p.add_argument('--protocol-config', help='a configs/eval/*.py protocol (plain Python: '
                   'protocol = dict(...), optionally linear_eval = dict(...))')
    p.add_argument('--protocol-options', nargs='+', action=DictAction,
                   help='override the protocol config, e.g. protocol.knn.k=20 '
                   'linear_eval.val.indices=64')
    p.add_argument('--labels', help="fraction of the labels: '1%%', '10%%', '100%%' "
                   "or a number in (0, 1] (default: the protocol's, else 1%%)")
    p.add_argument('--finetune', action='store_true', help="train the backbone too "
                   "(mode='finetune')")
    p.add_argument('--epochs', type=int)
    p.add_argument('--lr', type=float)
    p.add_argument('--momentum', type=float)
    p.add_argument('--batch-size', type=int)
    p.add_argument('--weight-decay', type=float)
    p.add_argument('--backbone-lr-mult', type=float,
                   help='backbone learning rate / classifier learning rate (finetune)')
    p.add_argument('--seed', type=int, help='label subset and classifier seed (default 0)')
    p.add_argument('--num-workers', type=int, default=0, help='data loader workers')
    p.add_argument('--work-dir', help='where the JSON goes (default: next to the checkpoint)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override the pre-training config')
    return p.parse_args(argv)


def parse_fraction(text) -> float:
    text = str(text).strip()
    value = float(text[:-1]) / 100 if text.endswith('%') else float(text)
    if not 0 < value <= 1:
        raise SystemExit(f'labels must be in (0, 1] or (0%, 100%], got {text}')
    return value


def load_protocol(path=None, options=None):
    """``(protocol, linear_eval)`` of a protocol config: ``protocol`` completed with
    :data:`DEFAULT_PROTOCOL` (unknown keys are an error), ``linear_eval`` the data
    override (``{}`` if none)."""
    protocol, data = {}, {}
    if path:
        pcfg = Config.fromfile(path)
        if options:
            pcfg.merge_from_dict(options)
        protocol = _plain(pcfg.get('protocol') or {})
        data = _plain(pcfg.get('linear_eval') or {})
        if not protocol:
            raise SystemExit(f'{path} has no protocol = dict(...)')
    elif options:
        raise SystemExit('--protocol-options needs --protocol-config')
    unknown = sorted(set(protocol) - set(DEFAULT_PROTOCOL))
    if unknown:
        raise SystemExit(f'unknown protocol keys {unknown}; known: {sorted(DEFAULT_PROTOCOL)}')
    out = dict(DEFAULT_PROTOCOL, **protocol)
    out['knn'] = dict(DEFAULT_PROTOCOL['knn'], **(protocol.get('knn') or {}))
    if out['mode'] not in MODES:
        raise SystemExit(f"protocol mode must be one of {MODES}, got {out['mode']!r}")
    return out, data


def resolve_protocol(args):
    """The protocol of a run: defaults < ``--protocol-config`` < explicit flags."""
    protocol, data = load_protocol(args.protocol_config, args.protocol_options)
    for flag, key in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            protocol[key] = value
    if args.finetune:
        protocol['mode'] = 'finetune'
    return protocol, data


def _plain(node):
    return node.to_dict() if hasattr(node, 'to_dict') else dict(node)


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
        load_regularizer_state(model, state)
    return backbone, model.data_preprocessor, path


def load_regularizer_state(model, state):
    """A ``RegularizedModel``'s regularizers from the checkpoint's ``regularizers.*``.

    VCReg's ``demean=True`` layers act inside the backbone (forward hooks on its blocks),
    their running means live in ``regularizers.*``: without them the evaluated backbone
    would subtract zeros, not the means its later blocks were trained after."""
    regs = getattr(model, 'regularizers', None)
    if not isinstance(regs, torch.nn.ModuleDict) or not regs.state_dict():
        return
    sub = {k[len('regularizers.'):]: v for k, v in state.items()
           if k.startswith('regularizers.')}
    if sub:
        regs.load_state_dict(sub, strict=True)
    elif any('running_mean' in k for k in regs.state_dict()):
        print('WARNING: the checkpoint has no regularizers.* state: the backbone runs with '
              "VCReg's demean layers at zero running means (evaluate the wrapped checkpoint, "
              'not a stripped one)')


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


def eval_datasets(cfg, override=None):
    """(train, val) dataset configs, the image size and the short side to resize to
    first (``None``: resize straight to ``size``).

    CONFIG's ``linear_eval`` (or, for a split it does not name, the pre-training dataset
    with that split), then the protocol's ``override``: ``size`` / ``resize_short``
    replace; a ``train`` / ``val`` dict with a ``type`` replaces that dataset, one without
    (e.g. ``dict(indices=64)``) updates it key by key."""
    override = _plain(override or {})
    unknown = sorted(set(override) - {'train', 'val', 'size', 'resize_short'})
    if unknown:
        raise SystemExit(f'linear_eval takes train, val, size, resize_short; got {unknown}')
    spec = dict(_plain(cfg.get('linear_eval') or {}))
    spec.update({k: override[k] for k in ('size', 'resize_short') if k in override})
    datasets = []
    for split in ('train', 'val'):
        patch = _plain(override.get(split) or {})
        if 'type' in patch:
            datasets.append(patch)
            continue
        base = _plain(spec[split]) if split in spec else _pretraining_split(cfg, split)
        datasets.append(dict(base, **patch))
    return datasets[0], datasets[1], int(spec.get('size', 32)), spec.get('resize_short')


def _pretraining_split(cfg, split):
    """The pre-training dataset with ``split='train'``, or ``'val'`` (ImageNet layouts) /
    ``'test'`` (CIFAR, MNIST) for ``split='val'``."""
    base = cfg.train_dataloader.dataset.to_dict()
    base.pop('pipeline', None)
    if 'split' not in base:
        raise SystemExit('the config has no linear_eval = dict(train=..., val=..., size=...) '
                         'and its dataset has no split to switch; add linear_eval')
    if split == 'val':
        split = 'test' if base['type'] in IN_MEMORY_DATASETS else 'val'
    return dict(base, split=split)


def build_eval_dataset(dataset_cfg, size, resize_short=None, interpolation='bilinear'):
    """The dataset with the evaluation pipeline: load if needed, gray -> 3 channels,
    resize (``size`` x ``size``, or the short side to ``resize_short`` then a centre
    crop of ``size``; Pillow's ``interpolation``: 'bilinear', or 'bicubic' for
    tools/transfer_eval.py), pack."""
    from mmengine.registry import DATASETS
    dataset_cfg = dict(dataset_cfg)
    dataset_cfg.pop('pipeline', None)
    if resize_short:
        resize = [dict(type='ResizeEdge', scale=int(resize_short), edge='short',
                       backend='pillow', interpolation=interpolation),
                  dict(type='CenterCrop', crop_size=size)]
    else:
        resize = [dict(type='Resize', scale=(size, size), backend='pillow',
                       interpolation=interpolation)]
    dataset_cfg['pipeline'] = [_LoadIfNeeded(), _ThreeChannels(), *resize,
                               dict(type='PackInputs')]
    return DATASETS.build(dataset_cfg)


def dataset_labels(dataset) -> torch.Tensor:
    """The labels of every item, read from the annotations (no image is loaded)."""
    if hasattr(dataset, 'get_gt_labels'):
        return torch.as_tensor(np.asarray(dataset.get_gt_labels()).reshape(-1)).long()
    return torch.tensor([_label(dataset[i]) for i in range(len(dataset))])


def _label(item) -> int:
    return int(item['data_samples'].gt_label.reshape(-1)[0])


def _collate(items):
    return torch.stack([item['inputs'] for item in items]), torch.tensor(
        [_label(item) for item in items])


def image_batches(dataset, indices=None, batch_size=256, num_workers=0):
    """``(uint8 images (B, 3, s, s), labels (B,))`` of ``dataset[indices]``, in order."""
    from torch.utils.data import DataLoader, Subset
    indices = range(len(dataset)) if indices is None else [int(i) for i in indices]
    yield from DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                          num_workers=num_workers, collate_fn=_collate)


def load_images(dataset_cfg, size, resize_short=None, indices=None, num_workers=0):
    """uint8 images ``(N, 3, size, size)`` and labels of a dataset (or of its ``indices``)."""
    dataset = build_eval_dataset(dataset_cfg, size, resize_short)
    return stacked(image_batches(dataset, indices, num_workers=num_workers), size)


def stacked(pairs, size):
    """``(images, labels)`` batches concatenated."""
    pairs = list(pairs)
    if not pairs:
        return torch.zeros(0, 3, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def normalized(pairs, normalize):
    """Dataloader-style batches of ``(images, labels)`` pairs, normalized."""
    for images, labels in pairs:
        yield dict(inputs=normalize(images), data_samples=[dict(gt_label=int(y)) for y in labels])


# --------------------------------------------------------------------------- main


def run(args):
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    # init_weights reports every parameter at INFO level; keep warnings only.
    MMLogger.get_instance(f'linear_eval_{time.time_ns()}', log_level='WARNING')
    protocol, data_override = resolve_protocol(args)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    fraction = parse_fraction(protocol['labels'])
    mode, seed = protocol['mode'], int(protocol['seed'])
    features = feature_extractor(protocol['features'])
    start = time.time()
    backbone, preprocessor, where = build_backbone(cfg, args.checkpoint)
    normalize = normalizer(preprocessor)
    train_cfg, val_cfg, size, resize_short = eval_datasets(cfg, data_override)
    train_set = build_eval_dataset(train_cfg, size, resize_short)
    val_set = build_eval_dataset(val_cfg, size, resize_short)
    train_labels, val_labels = dataset_labels(train_set), dataset_labels(val_set)
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    subset = label_subset(train_labels, fraction, seed)
    hyper = dict(epochs=protocol['epochs'], lr=protocol['lr'], momentum=protocol['momentum'],
                 batch_size=protocol['batch_size'], weight_decay=protocol['weight_decay'],
                 warmup_epochs=protocol['warmup_epochs'], seed=seed,
                 lr_steps=[int(e) for e in protocol['lr_steps']],
                 nesterov=bool(protocol['nesterov']), optimizer=protocol['optimizer'])
    workers = args.num_workers
    if mode == 'finetune':
        x, y = stacked(image_batches(train_set, subset, num_workers=workers), size)
        backbone.eval()  # read the feature width without touching BN statistics
        with torch.no_grad():
            feat_dim = features(backbone, normalize(x[:2])).shape[1]
        model = finetune(backbone, num_classes, feat_dim, x, y, normalize,
                         backbone_lr_mult=protocol['backbone_lr_mult'], features=features,
                         **hyper)
        with torch.no_grad():
            preds = torch.cat([model(b['inputs']).argmax(1) for b in normalized(
                image_batches(val_set, num_workers=workers), normalize)])
    else:
        train_x, train_y = extract_features(backbone, normalized(
            image_batches(train_set, subset, num_workers=workers), normalize), features=features)
        val_x, _ = extract_features(backbone, normalized(
            image_batches(val_set, num_workers=workers), normalize), features=features)
        feat_dim = int(train_x.shape[1])
        if mode == 'knn':
            preds = knn_predict(train_x, train_y, val_x, num_classes=num_classes,
                                **protocol['knn'])
        else:
            clf = train_linear_classifier(train_x, train_y, num_classes,
                                          standardize=protocol['standardize'], **hyper)
            with torch.no_grad():
                preds = clf(val_x).argmax(1)
    top1 = float((preds == val_labels).float().mean() * 100)
    settings = (dict(knn=protocol['knn']) if mode == 'knn' else
                dict(hyper, standardize=protocol['standardize']) if mode == 'frozen' else
                dict(hyper, backbone_lr_mult=protocol['backbone_lr_mult']))
    result = dict(config=args.config, checkpoint=args.checkpoint,
                  protocol_config=args.protocol_config, protocol=protocol['name'],
                  paper=protocol['paper'], dataset=protocol['dataset'], backbone=where,
                  mode=mode, features=protocol['features'], label_fraction=fraction,
                  num_labelled=int(subset.numel()), num_train=int(train_labels.numel()),
                  num_val=int(val_labels.numel()), feature_dim=feat_dim, size=size,
                  resize_short=resize_short,
                  top1=top1, seconds=round(time.time() - start, 1), **settings,
                  subset=subset.tolist())
    work_dir = args.work_dir or (osp.dirname(osp.abspath(args.checkpoint))
                                 if args.checkpoint.lower() != 'none' else '.')
    os.makedirs(work_dir, exist_ok=True)
    stem = protocol['name'] or f'{fraction:g}_{mode}'
    out = osp.join(work_dir, f'linear_eval_{stem}.json')
    with open(out, 'w') as f:
        json.dump(result, f, indent=1)
    what = (f"{protocol['knn']['k']}-NN" if mode == 'knn' else mode)
    print(f"{protocol['name'] or 'linear eval'} ({what} {where}, {fraction:.0%} of the labels "
          f'= {subset.numel()} images, seed {seed}): top-1 = {top1:.2f}% on '
          f'{val_labels.numel()} images -> {out}')
    return result


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
