r"""SER's equivariance score: how well a token map commutes with the group action.

For an image batch :math:`x`, a group element :math:`g` (:mod:`sslreg.geometry`) and
the token map :math:`f_\ell(x)` after block :math:`\ell` (CLS token dropped), the
score is the cosine similarity, averaged over tokens, between the map of the
transformed image and the transformed map:

.. math::

    E_g(x) = \frac{1}{hw} \sum_{t} \cos\bigl(f_\ell(g\cdot x)_t,\ [\rho_g f_\ell(x)]_t\bigr)

(1 = exactly equivariant). :math:`\rho_g` permutes tokens for rotations and flips and
resamples them onto :math:`f_\ell(g\cdot x)`'s lattice for scalings (bilinear,
``align_corners=False``, as in training). The paper reports it for rotation, flip and
scale; :data:`DEFAULT_TRANSFORMS` are a quarter turn, a horizontal flip and a x1.25
rescale (the paper's exact scale factor is not known to us).

Three ways to use it:

* :func:`equivariance_scores` / :func:`per_sample_scores` on a backbone and a batch;
* in val/test: an SER algorithm's ``predict`` mode puts per-sample scores in each
  data sample and :class:`EquivarianceMetric` (``val_evaluator=dict(type=
  'EquivarianceMetric')``) averages them;
* from the shell: ``python -m sslreg.evaluation.equivariance CONFIG CHECKPOINT
  --data-root data/small/digits_imagenet --size 32``.
"""
import argparse
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS
from torch import nn

from ..geometry import GroupElement, act

__all__ = ['DEFAULT_TRANSFORMS', 'token_map', 'per_sample_scores', 'equivariance_scores',
           'EquivarianceMetric']

DEFAULT_TRANSFORMS: Dict[str, GroupElement] = {
    'rot90': GroupElement(rot=1),
    'flip': GroupElement(flip=True),
    'scale': GroupElement(scale=(1.25, 1.25)),
}


def _patch_size(backbone: nn.Module) -> int:
    return int(backbone.patch_embed.projection.stride[0])


def default_layer(backbone: nn.Module) -> int:
    """The regularized layer: ``cls_insert_layer`` of a LateClsViT, else 3."""
    return int(getattr(backbone, 'cls_insert_layer', 3) or 3)


def token_map(backbone: nn.Module, x: torch.Tensor, layer: Optional[int] = None,
              patch_size: Optional[int] = None) -> torch.Tensor:
    """``(B, C, h, w)`` output of block ``layer`` (1-based) of a ViT-like backbone
    (``backbone.layers``), its CLS token (if any) dropped. ``layer`` defaults to
    :func:`default_layer`."""
    layer = default_layer(backbone) if layer is None else int(layer)
    if not 1 <= layer <= len(backbone.layers):
        raise ValueError(f'layer must be in [1, {len(backbone.layers)}], got {layer}')
    p = patch_size or _patch_size(backbone)
    h, w = x.shape[-2] // p, x.shape[-1] // p
    seen = {}

    def hook(_module, _inputs, output):
        seen['out'] = output
        raise _Stop

    handle = backbone.layers[layer - 1].register_forward_hook(hook)
    try:
        backbone(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    out = seen['out']
    tokens = out[:, out.shape[1] - h * w:]
    return tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class _Stop(Exception):
    """Ends the forward pass once the requested block has run."""


@torch.no_grad()
def per_sample_scores(backbone: nn.Module, x: torch.Tensor,
                      transforms: Mapping[str, GroupElement] = DEFAULT_TRANSFORMS,
                      layer: Optional[int] = None, patch_size: Optional[int] = None,
                      mode: str = 'bilinear') -> Dict[str, torch.Tensor]:
    """``{name: (B,) scores}``: :math:`E_g` per image, for each named ``g``."""
    was_training = backbone.training
    backbone.eval()
    try:
        p = patch_size or _patch_size(backbone)
        base = token_map(backbone, x, layer, p)
        scores = {}
        for name, g in transforms.items():
            fx_g = token_map(backbone, act(x, g, unit=p, mode=mode), layer, p)
            rho_fx = act(base, g, out_size=fx_g.shape[-2:], mode=mode)
            scores[name] = F.cosine_similarity(fx_g, rho_fx, dim=1).flatten(1).mean(1)
        return scores
    finally:
        backbone.train(was_training)


def equivariance_scores(backbone: nn.Module, x: torch.Tensor,
                        transforms: Mapping[str, GroupElement] = DEFAULT_TRANSFORMS,
                        layer: Optional[int] = None, **kwargs) -> Dict[str, float]:
    """Batch means of :func:`per_sample_scores`."""
    return {k: float(v.mean()) for k, v in
            per_sample_scores(backbone, x, transforms, layer, **kwargs).items()}


@METRICS.register_module()
class EquivarianceMetric(BaseMetric):
    """Averages the ``equiv_scores`` an SER algorithm's ``predict`` writes into each
    data sample; reports ``equivariance/<name>`` and their mean
    ``equivariance/mean``."""

    default_prefix = 'equivariance'

    def process(self, data_batch, data_samples: Sequence) -> None:
        for ds in data_samples:
            if isinstance(ds, dict):
                scores = ds.get('equiv_scores')
                if scores is None:
                    scores = ds.get('metainfo', {}).get('equiv_scores')
            else:
                scores = ds.metainfo.get('equiv_scores')
            if scores is None:
                raise KeyError('no equiv_scores in the model output: EquivarianceMetric reads '
                               "what SER algorithms' predict mode writes")
            self.results.append(dict(scores))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        names = sorted(results[0])
        out = {n: sum(r[n] for r in results) / len(results) for n in names}
        out['mean'] = sum(out.values()) / len(names)
        return out


def main(argv=None):
    parser = argparse.ArgumentParser(description='Equivariance score of a checkpoint\'s '
                                     'backbone on an image folder (mean over images).')
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', default=None)
    parser.add_argument('--data-root', required=True, help='ImageNet-style folder')
    parser.add_argument('--size', type=int, default=224, help='images are resized to size^2')
    parser.add_argument('--layer', type=int, default=None, help='block (1-based); default: '
                        "the LateClsViT's cls_insert_layer")
    parser.add_argument('--num-images', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=64)
    args = parser.parse_args(argv)

    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    import sslreg  # noqa: F401  (registers)
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    dataset = DATASETS.build(dict(
        type='CustomDataset', data_root=args.data_root, with_label=False,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='Resize', scale=(args.size, args.size)),
                  dict(type='PackInputs')]))
    n = min(args.num_images, len(dataset))
    totals: Dict[str, float] = {}
    for start in range(0, n, args.batch_size):
        items = [dataset[i] for i in range(start, min(n, start + args.batch_size))]
        data = model.data_preprocessor(
            dict(inputs=torch.stack([it['inputs'] for it in items]),
                 data_samples=[it['data_samples'] for it in items]))
        x = data['inputs'][0] if isinstance(data['inputs'], list) else data['inputs']
        for k, v in per_sample_scores(model.backbone, x, layer=args.layer).items():
            totals[k] = totals.get(k, 0.0) + float(v.sum())
    for k, v in totals.items():
        print(f'equivariance/{k}: {v / n:.4f}')
    return {k: v / n for k, v in totals.items()}


if __name__ == '__main__':
    main()
