"""How much MCR's terms pull, relative to the SSL loss, over a grid of weights.

    python tools/analysis/mcr_gradient_shares.py configs/mcr/mcr_simclr_r18_digits.py \\
        [--lambda1 0.01,0.1,1] [--lambda2 0.1,1] [--mec-scale mec_training,coding_length]

Builds the config's MCR model as tools/train.py does, takes the first batch of its
training data and prints, for each (mec_scale, lambda1, lambda2), ``MCR.gradient_shares``:
the norm of lambda1 * L_mcr's gradient on the embeddings over that of L_ssl, and the same
for lambda2 * L_comp on the fused embedding. Nothing is trained. The MCR paper gives no mu
and its Table 6 weights belong to that unstated scale; use this to pick weights at which
the regularizer carries a real share (then train with ``--cfg-options model.lambda1=...``).
"""
import argparse
import itertools
import os.path as osp
import sys
from typing import List

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def floats(text: str) -> List[float]:
    return [float(v) for v in text.split(',') if v]


def first_batch_model(config: str, seed: int):
    """The config's MCR model (train mode, SyncBN reverted) and its first preprocessed batch."""
    import torch
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    from sslreg.compat import fix_config_for_this_machine
    cfg = Config.fromfile(config)
    fix_config_for_this_machine(cfg)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    torch.manual_seed(seed)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).train()
    if type(model).__name__ != 'MCR':
        raise SystemExit(f'{config} builds a {type(model).__name__}, not MCR')
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    data = model.data_preprocessor(next(iter(loader)), True)
    return model, data


def main(argv=None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--lambda1', type=floats, default=None,
                        help="comma-separated (default: the config's)")
    parser.add_argument('--lambda2', type=floats, default=None,
                        help="comma-separated (default: the config's)")
    parser.add_argument('--mec-scale', default=None,
                        help="comma-separated, from mec_training,coding_length "
                        "(default: the config's)")
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    model, data = first_batch_model(args.config, args.seed)
    grid = itertools.product(
        args.mec_scale.split(',') if args.mec_scale else [model.mec_scale],
        args.lambda1 or [model.lambda1], args.lambda2 or [model.lambda2])
    rows = []
    print('| mec_scale | lambda1 | lambda2 | lambda1·L_mcr share | lambda2·L_comp share |')
    print('|---|---:|---:|---:|---:|')
    for scale, lambda1, lambda2 in grid:
        model.mec_scale, model.lambda1, model.lambda2 = scale, lambda1, lambda2
        shares = model.gradient_shares(data['inputs'], data['data_samples'])
        rows.append(dict(mec_scale=scale, lambda1=lambda1, lambda2=lambda2, **shares))
        print(f"| {scale} | {lambda1:g} | {lambda2:g} | {shares['mcr']:.2%} | "
              f"{shares['comp']:.2%} |", flush=True)
    return rows


if __name__ == '__main__':
    main()
