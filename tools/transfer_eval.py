"""VCReg's transfer table (Table 1, App. C.1): one frozen checkpoint, several datasets, one
top-1 accuracy each, printed as a markdown row and written to a JSON.

    python tools/transfer_eval.py CONFIG CHECKPOINT --datasets food101 stanford_cars \\
        fgvc_aircraft oxford_pets flowers102 dtd places205 inat18 [--label NAME] \\
        [--work-dir D] [--device cuda] [--num-workers 8] [--protocol-options K=V ...] \\
        [--cfg-options K=V ...]

CONFIG / CHECKPOINT as for tools/linear_eval.py (the pre-training config gives the model;
its backbone is loaded from the checkpoint, ``none`` = random init). Each name in
``--datasets`` is a protocol config ``configs/eval/transfer/<name>.py`` (or a path to one;
``all`` = the eight above). Two kinds:

* ``protocol.mode='logreg'`` (Food-101, Stanford Cars, FGVC Aircraft, Oxford-IIIT Pets,
  Flowers-102, DTD; Kornblith et al. 2019): features of the frozen backbone (short side
  resized to ``transfer.resize_short`` = 224 with ``interpolation`` = bicubic, centre crop
  ``size`` = 224, no augmentation), then :func:`sslreg.evaluation.transfer.transfer_probe`:
  L2-regularized multinomial logistic regression by L-BFGS, ``mean CE + lambda/2 ||W||^2``
  (scikit-learn's ``C = 1 / (n lambda)``), lambda from 45 log-spaced values in [1e-5, 1e5]
  by top-1 on the validation split (``transfer.val``; ``None``: ``val_fraction`` = 20% of
  each class of the training split held out, seed ``protocol.seed`` = 0), refit on
  train + val, top-1 on ``transfer.test``;
* ``protocol.mode='frozen'`` (Places-205, iNat18; Zbontar et al. 2021's linear protocol):
  run by tools/linear_eval.py itself with that protocol config (an SGD linear classifier on
  frozen features; its ``linear_eval`` names the data).

``--protocol-options`` is applied to every dataset's config (``transfer.*`` keys reach the
logreg ones, ``linear_eval.*`` keys the linear ones; e.g. ``transfer.train.indices=300``;
a ``protocol.*`` key must suit every listed dataset's kind: run the two kinds apart).
Output: the row ``| LABEL | acc | acc | ... |`` under a header of the datasets' names, and
``WORK_DIR/transfer_eval[_LABEL].json`` (per dataset: top-1, chosen lambda and its C, the
validation curve, split sizes; for the linear ones tools/linear_eval.py's result).
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import re
import sys
import time

import torch

TOOLS = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(TOOLS, '..'))
import sslreg  # noqa: E402,F401  (registers, applies compat)
from mmengine.config import Config, DictAction  # noqa: E402

from sslreg.evaluation.linear_probe import extract_features, feature_extractor  # noqa: E402
from sslreg.evaluation.transfer import (GRID, VAL_FRACTION, VAL_SEED,  # noqa: E402
                                        holdout_split, lambda_grid, transfer_probe)



def _linear_eval():
    """tools/linear_eval.py (model loading, data pipeline, the SGD linear protocol)."""
    spec = importlib.util.spec_from_file_location('linear_eval', osp.join(TOOLS, 'linear_eval.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


le = _linear_eval()
CONFIGS = osp.join(TOOLS, '..', 'configs', 'eval', 'transfer')
#: VCReg Table 1's datasets, in the order the row prints them by default.
TABLE1 = ('food101', 'stanford_cars', 'fgvc_aircraft', 'oxford_pets', 'flowers102', 'dtd',
          'places205', 'inat18')
LOGREG_PROTOCOL = dict(name=None, paper=None, dataset=None, mode='logreg',
                       features=dict(type='pooled'), lambdas=dict(GRID),
                       val_fraction=VAL_FRACTION, seed=VAL_SEED, max_iter=1000, tol=1e-6)
DATA_KEYS = ('train', 'val', 'test', 'size', 'resize_short', 'interpolation')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="VCReg's transfer table: logistic regression / "
                                'linear probes of one checkpoint on several datasets')
    p.add_argument('config', help='the pre-training config')
    p.add_argument('checkpoint', help="its checkpoint, or 'none' for the random init")
    p.add_argument('--datasets', nargs='+', default=['all'],
                   help=f"names in configs/eval/transfer/ ({', '.join(TABLE1)}; 'all'), "
                   'or paths to protocol configs')
    p.add_argument('--label', help='the row label (default: the config file name)')
    p.add_argument('--protocol-options', nargs='+', default=[],
                   help='applied to every dataset config, e.g. transfer.train.indices=300')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                   help='feature extraction and L-BFGS (default: cuda if available); the '
                   'linear protocols run on the CPU as tools/linear_eval.py does')
    p.add_argument('--batch-size', type=int, default=256, help='feature extraction batch')
    p.add_argument('--num-workers', type=int, default=0, help='data loader workers')
    p.add_argument('--work-dir', help='where the JSON goes (default: next to the checkpoint)')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='override the pre-training config')
    return p.parse_args(argv)


def _options(strings):
    """``['a.b=1', ...]`` -> mmengine's dict of them (DictAction's parsing)."""
    ns = argparse.Namespace()
    DictAction(option_strings=[], dest='options')(None, ns, list(strings))
    return getattr(ns, 'options', None) or {}


def resolve(name):
    """The protocol config of a dataset name (or a path)."""
    path = name if name.endswith('.py') else osp.join(CONFIGS, f'{name}.py')
    if not osp.isfile(path):
        known = sorted(f[:-3] for f in os.listdir(CONFIGS) if f.endswith('.py'))
        raise SystemExit(f'no protocol config {path}; known datasets: {known}')
    return osp.normpath(path)


def load(path, options=None):
    """``(protocol, transfer)`` of a protocol config: for ``mode='logreg'`` the protocol
    completed with :data:`LOGREG_PROTOCOL` (unknown keys are an error) and its ``transfer``
    data dict; for any other mode (tools/linear_eval.py's) ``(protocol, None)``."""
    pcfg = Config.fromfile(path)
    if options:
        pcfg.merge_from_dict(options)
    protocol = le._plain(pcfg.get('protocol') or {})
    if not protocol:
        raise SystemExit(f'{path} has no protocol = dict(...)')
    if protocol.get('mode') != 'logreg':
        return protocol, None
    unknown = sorted(set(protocol) - set(LOGREG_PROTOCOL))
    if unknown:
        raise SystemExit(f'{path}: unknown protocol keys {unknown}; known: '
                         f'{sorted(LOGREG_PROTOCOL)}')
    protocol = dict(LOGREG_PROTOCOL, **protocol)
    protocol['lambdas'] = dict(GRID, **protocol['lambdas'])
    data = le._plain(pcfg.get('transfer') or {})
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown or not all(data.get(k) for k in ('train', 'test')):
        raise SystemExit(f'{path}: transfer = dict(train=..., val=... or None, test=..., '
                         f'size, resize_short, interpolation); got {sorted(data)}')
    data = dict(dict(val=None, size=224, resize_short=224, interpolation='bicubic'), **data)
    return protocol, data


# --------------------------------------------------------------------------- logreg


def features_of(backbone, normalize, dataset, reader, device, batch_size=256, num_workers=0):
    """Frozen features ``(N, D)`` (on ``device``) and labels ``(N,)`` of a dataset."""
    def batches():
        for images, labels in le.image_batches(dataset, batch_size=batch_size,
                                               num_workers=num_workers):
            yield dict(inputs=normalize(images.to(device)),
                       data_samples=[dict(gt_label=int(y)) for y in labels])
    return extract_features(backbone, batches(), features=reader)


def run_logreg(path, protocol, data, model, args):
    """One logistic-regression transfer result (a dict; ``top1`` in %)."""
    backbone, normalize, where = model
    start = time.time()
    reader = feature_extractor(protocol['features'])
    size, short, interp = int(data['size']), data['resize_short'], data['interpolation']
    feats = {}
    for split in ('train', 'val', 'test'):
        if data[split] is not None:
            dataset = le.build_eval_dataset(data[split], size, short, interp)
            feats[split] = features_of(backbone, normalize, dataset, reader, args.device,
                                       args.batch_size, args.num_workers)
    train_x, train_y = feats['train']
    if 'val' in feats:
        val_x, val_y = feats['val']
        val_source = 'the dataset\'s val split'
    else:
        tr, va = holdout_split(train_y, protocol['val_fraction'], protocol['seed'])
        (val_x, val_y), (train_x, train_y) = (train_x[va], train_y[va]), (train_x[tr],
                                                                          train_y[tr])
        val_source = (f"{protocol['val_fraction']:.0%} of each class of the training split, "
                      f"seed {protocol['seed']}")
    test_x, test_y = feats['test']
    lambdas = lambda_grid(**protocol['lambdas']).tolist()
    probe = transfer_probe(train_x, train_y, val_x, val_y, test_x, test_y, lambdas=lambdas,
                           max_iter=protocol['max_iter'], tol=protocol['tol'])
    return dict(protocol_config=path, protocol=protocol['name'], paper=protocol['paper'],
                dataset=protocol['dataset'], mode='logreg', backbone=where,
                features=protocol['features'], feature_dim=int(train_x.shape[1]),
                num_train=int(train_y.numel()), num_val=int(val_y.numel()),
                num_test=int(test_y.numel()), val_source=val_source, size=size,
                resize_short=short, interpolation=interp, max_iter=protocol['max_iter'],
                tol=protocol['tol'], seconds=round(time.time() - start, 1), **probe)


def build_model(cfg, checkpoint, device):
    """(backbone, normalize, where) on ``device``, as tools/linear_eval.py loads them."""
    backbone, preprocessor, where = le.build_backbone(cfg, checkpoint)
    backbone.to(device)
    preprocessor.to(device)
    return backbone, le.normalizer(preprocessor), where


# --------------------------------------------------------------------------- main


def markdown(label, results):
    names = [r['dataset'] for r in results]
    return '\n'.join(['| checkpoint | ' + ' | '.join(names) + ' |',
                      '|---|' + '---|' * len(names),
                      f'| {label} | ' + ' | '.join(f"{r['top1']:.2f}" for r in results) + ' |'])


def run(args):
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    MMLogger.get_instance(f'transfer_eval_{time.time_ns()}', log_level='WARNING')
    names = [n for name in args.datasets for n in (TABLE1 if name == 'all' else [name])]
    paths = [resolve(n) for n in names]
    options = _options(args.protocol_options)
    loaded = [load(p, options) for p in paths]  # every config checked before any work
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(_options(args.cfg_options))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    work_dir = args.work_dir or (osp.dirname(osp.abspath(args.checkpoint))
                                 if args.checkpoint.lower() != 'none' else '.')
    os.makedirs(work_dir, exist_ok=True)
    model, results = None, []
    for path, (protocol, data) in zip(paths, loaded):
        if data is not None:
            if model is None:
                model = build_model(cfg, args.checkpoint, args.device)
            result = run_logreg(path, protocol, data, model, args)
            print(f"{protocol['name']}: top-1 {result['top1']:.2f}% on {result['num_test']} "
                  f"test images (lambda {result['lambda']:.3g} on {result['val_source']})")
            if not result['converged']:
                print(f"  warning: the refit stopped at max_iter={protocol['max_iter']} "
                      f"(largest gradient entry {result['grad_max']:.2g} > tol "
                      f"{protocol['tol']:g}); raise protocol.max_iter")
        else:
            argv = [args.config, args.checkpoint, '--protocol-config', path, '--work-dir',
                    work_dir, '--num-workers', str(args.num_workers)]
            if args.protocol_options:
                argv += ['--protocol-options', *args.protocol_options]
            if args.cfg_options:
                argv += ['--cfg-options', *args.cfg_options]
            result = dict(le.run(le.parse_args(argv)), protocol_config=path)
            result.pop('subset', None)  # all labels: the index list says nothing
        results.append(result)
    label = args.label or osp.splitext(osp.basename(args.config))[0]
    row = markdown(label, results)
    stem = 'transfer_eval' + (f"_{re.sub(r'[^A-Za-z0-9._-]', '_', label)}" if args.label else '')
    out = osp.join(work_dir, f'{stem}.json')
    with open(out, 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint, label=label, row=row,
                       datasets={n: r for n, r in zip(names, results)}), f, indent=1)
    print(row)
    print(f'-> {out}')
    return dict(row=row, results=results, json=out)


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
