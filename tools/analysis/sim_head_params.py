"""Parameters ρSIM adds to each backbone of the SIM paper, per head form, vs the paper.

    python tools/analysis/sim_head_params.py [--out docs/sim_head_params.md]

Each row builds a backbone as its shipped config does (the CUB ρSIM configs; mmpretrain's
CIFAR ResNets with ρSIM on every residual block for the paper's Table 2 rows), attaches
``RhoSIM`` with the config's ``layers`` and a head form, runs the probe forward and counts
the regularizer's parameters (all of them, and the trainable ones: the separate form's H1
is frozen). The paper's column is the parameter delta its tables report.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: name -> (config or model dict, layers, probe size, the paper's delta in M, its source)
BACKBONES = {
    'ResNet-50 (CUB)': ('configs/sim/cub/resnet50_rhosim_8xb8_cub.py', 1.12, 'Table 3'),
    'DenseNet-169 (CUB)': ('configs/sim/cub/densenet169_rhosim_8xb8_cub.py', 1.57, 'Table 3'),
    'ConvNeXt-B (CUB)': ('configs/sim/cub/convnext-base_rhosim_8xb8_cub.py', 1.79, 'Table 3'),
    'Swin-B (CUB)': ('configs/sim/cub/swin-base_rhosim_8xb8_cub-384px.py', 0.43, 'Table 3'),
    'ResNet-18 (CIFAR)': (dict(depth=18, width=512), 0.06, 'Table 2'),
    'ResNet-50 (CIFAR)': (dict(depth=50, width=2048), 0.71, 'Table 2'),
}

#: column -> the RhoSIM options of that head form
FORMS = {
    "separate, K=sqrt (preset 'paper')": dict(preset='paper'),
    'shared, K=sqrt (authors\' earlier commit)': dict(preset='authors_code', dim='sqrt'),
    "shared, K=128 (preset 'authors_code')": dict(preset='authors_code'),
}


def cifar_model(depth: int, width: int) -> dict:
    return dict(type='RegularizedModel', probe_input=(1, 3, 32, 32),
                architecture=dict(type='ImageClassifier',
                                  backbone=dict(type='ResNet_CIFAR', depth=depth),
                                  neck=dict(type='GlobalAveragePooling'),
                                  head=dict(type='LinearClsHead', num_classes=100,
                                            in_channels=width)),
                regularizers=dict(sim=dict(type='RhoSIM', layers='backbone.layer*.*',
                                           rho=0.2)))


def model_dict(source) -> dict:
    if isinstance(source, dict):
        return cifar_model(**source)
    from mmengine.config import Config
    return Config.fromfile(osp.join(ROOT, source)).model.to_dict()


def count(source, options: dict) -> Dict[str, float]:
    import torch
    from mmengine.registry import MODELS
    cfg = model_dict(source)
    sim = cfg['regularizers']['sim']
    for key in ('head', 'dim', 'hidden', 'kind', 'reduction'):
        sim.pop(key, None)
    sim.update(options)
    torch.manual_seed(0)
    reg = MODELS.build(cfg).regularizers['sim']
    params = list(reg.parameters())
    return dict(total=sum(p.numel() for p in params) / 1e6,
                trainable=sum(p.numel() for p in params if p.requires_grad) / 1e6,
                blocks=len(reg.layer_names))


def table(rows: List[dict]) -> str:
    forms = list(FORMS)
    head = ['backbone', 'blocks', 'paper Δ (M)'] + [f'{f}: total / trainable (M)' for f in forms]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        cells = [row['name'], str(row['blocks']), f"{row['paper']:.2f} ({row['source']})"]
        cells += [f"{row[f]['total']:.2f} / {row[f]['trainable']:.2f}" for f in forms]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=None, help='also write the table to this file')
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    import sslreg  # noqa: F401  (registers RhoSIM and RegularizedModel)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    rows = []
    for name, (source, paper, where) in BACKBONES.items():
        row = dict(name=name, paper=paper, source=where)
        for form, options in FORMS.items():
            row[form] = count(source, options)
            row['blocks'] = row[form]['blocks']
        rows.append(row)
        print(f'[sim_head_params] {name} done', file=sys.stderr)
    text = table(rows)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return text


if __name__ == '__main__':
    main()
