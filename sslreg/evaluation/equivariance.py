r"""SER's equivariance score: how well a token map commutes with the group action.

For an image batch :math:`x`, a group element :math:`g` (:mod:`sslreg.geometry`) and a
token map :math:`f(x)` of the backbone (CLS token dropped), the score is the cosine
similarity, averaged over tokens, between the map of the transformed image and the
transformed map:

.. math::

    E_g(x) = \frac{1}{hw} \sum_{t} \cos\bigl(f(g\cdot x)_t,\ [\rho_g f(x)]_t\bigr)

(1, the maximum, = exactly equivariant). :math:`\rho_g` permutes tokens for rotations
and flips and resamples them onto :math:`f(g\cdot x)`'s lattice for scalings (bilinear,
``align_corners=False``, the kernel SER trains with), and the image is moved by the
same :func:`~sslreg.geometry.act` the SER algorithms use on their views.

Where (``locations``; the keys are ``<location>/<transform>``)
------------------------------------------------------------------
* ``'final'`` -- **the paper's Table 4**, "the final representation ... at the last
  layer": the last block's patch tokens after the backbone's final norm (``ln1`` when
  ``final_norm``, as ``VisionTransformer`` / ``LateClsViT`` apply it), CLS dropped.
* ``'layer_k'`` -- an extra: the map the SER loss reads, block ``k``'s output through
  ``ln_equiv`` -- for a backbone with ``forward_with_tokens`` (``LateClsViT``) exactly
  what that call returns to the SER projector and loss (``k = cls_insert_layer``). Other
  ViTs: block ``k`` (:func:`default_layer`) raw.
* an int ``i`` -- block ``i``'s raw output (key ``layer_<i>``), for layer sweeps.

Which transforms (``transforms``)
---------------------------------
By default :func:`sample_transforms`: group elements **sampled**, with a fixed seed (so a
score is reproducible and every checkpoint is scored on the same elements), from the
group the SER views use (:class:`~sslreg.datasets.GeometricGroupViews`' defaults:
quarter turns, horizontal flip, area 0.7-1.3, aspect 3/4-4/3), in families

* ``rotation``: non-identity quarter turns drawn from ``rotations``;
* ``flip``: the horizontal flip (the group's reflection; nothing to draw);
* ``scale``: anisotropic scalings drawn as the views draw them (area, log-aspect);
* ``group``: full elements ``R^r F^f S_s`` drawn exactly as the views draw ``g1``/``g2``.

Each family's score is the mean over its elements. :data:`DEFAULT_TRANSFORMS` (a
quarter turn, a flip, a x1.25 rescale) is the earlier fixed set, still accepted.

Three ways to use it:

* :func:`equivariance_scores` / :func:`per_sample_scores` on a backbone and a batch;
* in val/test: an SER algorithm's ``predict`` mode (:func:`ser_predict`, which the
  model finds by name in MMEngine's ``FUNCTIONS``) puts per-sample scores in each
  data sample and :class:`EquivarianceMetric` (``val_evaluator=dict(type=
  'EquivarianceMetric')``) averages them (keys ``equivariance/final/<t>``,
  ``equivariance/layer_k/<t>``, ``equivariance/<location>/mean``);
* from the shell: ``python -m sslreg.evaluation.equivariance CONFIG CHECKPOINT
  --data-root data/small/digits_imagenet --size 32``.
"""
import argparse
import random
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.registry import DATASETS, FUNCTIONS, METRICS, MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import nn

from ..geometry import GroupElement, act, sample_element
from ..regularizers.taps import LayerRecorder

__all__ = ['DEFAULT_TRANSFORMS', 'LOCATIONS', 'TRANSFORM_FAMILIES', 'sample_transforms',
           'token_map', 'token_maps', 'per_sample_scores', 'equivariance_scores',
           'EquivarianceMetric', 'ser_eval_transforms', 'ser_predict']

#: The earlier fixed transforms (one element each); pass as ``transforms`` to use them.
DEFAULT_TRANSFORMS: Dict[str, GroupElement] = {
    'rot90': GroupElement(rot=1),
    'flip': GroupElement(flip=True),
    'scale': GroupElement(scale=(1.25, 1.25)),
}

#: The locations scored by default: the paper's (``final``) and SER's layer (``layer_k``).
LOCATIONS = ('final', 'layer_k')
TRANSFORM_FAMILIES = ('rotation', 'flip', 'scale', 'group')

Location = Union[str, int]
Transforms = Mapping[str, Union[GroupElement, Sequence[GroupElement]]]


def sample_transforms(num_samples: int = 4, seed: int = 0,
                      scale_range: Sequence[float] = (0.7, 1.3),
                      ratio_range: Sequence[float] = (3 / 4, 4 / 3),
                      rotations: Sequence[int] = (0, 1, 2, 3), flip_prob: float = 0.5,
                      families: Sequence[str] = TRANSFORM_FAMILIES
                      ) -> Dict[str, List[GroupElement]]:
    """``{family: [GroupElement, ...]}``, ``num_samples`` draws per family from a
    ``random.Random(seed)`` (module docstring). The group arguments are
    :class:`~sslreg.datasets.GeometricGroupViews`' (and their defaults)."""
    unknown = set(families) - set(TRANSFORM_FAMILIES)
    if unknown:
        raise ValueError(f'unknown transform families {sorted(unknown)}; known: '
                         f'{TRANSFORM_FAMILIES}')
    if num_samples < 1:
        raise ValueError(f'num_samples must be >= 1, got {num_samples}')
    rng = random.Random(seed)
    turns = [int(r) % 4 for r in rotations if int(r) % 4]
    out: Dict[str, List[GroupElement]] = {}
    for family in TRANSFORM_FAMILIES:  # fixed order: the draws do not depend on `families`
        if family == 'rotation':
            gs = [GroupElement(rot=rng.choice(turns)) for _ in range(num_samples)] if turns else []
        elif family == 'flip':
            gs = [GroupElement(flip=True)]
        elif family == 'scale':
            gs = [sample_element(tuple(scale_range), tuple(ratio_range), (), 0.0, rng=rng)
                  for _ in range(num_samples)]
        else:
            gs = [sample_element(tuple(scale_range), tuple(ratio_range), tuple(rotations),
                                 flip_prob, rng=rng) for _ in range(num_samples)]
        if family in families and gs:
            out[family] = gs
    return out


def _patch_size(backbone: nn.Module) -> int:
    return int(backbone.patch_embed.projection.stride[0])


def default_layer(backbone: nn.Module) -> int:
    """The regularized layer: ``cls_insert_layer`` of a LateClsViT, else 3."""
    return int(getattr(backbone, 'cls_insert_layer', 3) or 3)


def _location_name(loc: Location) -> str:
    if isinstance(loc, str):
        if loc not in LOCATIONS:
            raise ValueError(f"location must be one of {LOCATIONS} or a block number, got "
                             f'{loc!r}')
        return loc
    return f'layer_{int(loc)}'


def token_maps(backbone: nn.Module, x: torch.Tensor,
               locations: Sequence[Location] = LOCATIONS,
               patch_size: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """``{location name: (B, C, h, w) map}`` of a ViT-like backbone (``backbone.layers``)
    from one forward pass (module docstring for what each location reads), which ends
    once the blocks it needs have run."""
    p = patch_size or _patch_size(backbone)
    h, w = x.shape[-2] // p, x.shape[-1] // p
    n_layers = len(backbone.layers)
    fwt = hasattr(backbone, 'forward_with_tokens')
    blocks: Dict[str, tuple] = {}  # name -> (0-based block, norm or None)
    for loc in locations:
        name = _location_name(loc)
        if name == 'final':
            norm = backbone.ln1 if getattr(backbone, 'final_norm', False) and hasattr(
                backbone, 'ln1') else None
            blocks[name] = (n_layers - 1, norm)
        elif name == 'layer_k':
            if not fwt:
                blocks[name] = (default_layer(backbone) - 1, getattr(backbone, 'ln_equiv', None))
        else:
            if not 1 <= int(loc) <= n_layers:
                raise ValueError(f'layer must be in [1, {n_layers}], got {loc}')
            blocks[name] = (int(loc) - 1, None)
    use_fwt = fwt and any(_location_name(loc) == 'layer_k' for loc in locations)
    needed = [f'layers.{b}' for b in sorted({b for b, _ in blocks.values()})] or None
    # forward_with_tokens must run to its end (it returns layer k's tokens)
    recorder = LayerRecorder(needed, stop_after=None if use_fwt else needed)
    recorder.attach(backbone)
    tokens_k = None
    try:
        with recorder:
            if use_fwt:
                _, tokens_k = backbone.forward_with_tokens(x)
            else:
                backbone(x)
    finally:
        recorder.detach()
    maps = {}
    for loc in locations:
        name = _location_name(loc)
        if name == 'layer_k' and use_fwt:
            maps[name] = tokens_k
            continue
        block, norm = blocks[name]
        out = recorder.last(f'layers.{block}').output
        tokens = out[:, out.shape[1] - h * w:]  # CLS (if any) first
        if norm is not None:
            tokens = norm(tokens)
        maps[name] = tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)
    return maps


def token_map(backbone: nn.Module, x: torch.Tensor, layer: Optional[Location] = None,
              patch_size: Optional[int] = None) -> torch.Tensor:
    """One ``(B, C, h, w)`` map: ``layer`` a location of :func:`token_maps` (``'final'``,
    ``'layer_k'``) or a block number (raw output); None = block :func:`default_layer`
    raw (the earlier behaviour)."""
    layer = default_layer(backbone) if layer is None else layer
    return token_maps(backbone, x, (layer,), patch_size)[_location_name(layer)]


@torch.no_grad()
def per_sample_scores(backbone: nn.Module, x: torch.Tensor,
                      transforms: Optional[Transforms] = None,
                      locations: Sequence[Location] = LOCATIONS,
                      patch_size: Optional[int] = None,
                      mode: str = 'bilinear') -> Dict[str, torch.Tensor]:
    """``{'<location>/<name>': (B,) scores}``: :math:`E_g` per image, averaged over the
    elements of each named transform (a GroupElement or a list of them; None =
    :func:`sample_transforms` ()), at each location."""
    transforms = sample_transforms() if transforms is None else transforms
    names = [_location_name(loc) for loc in locations]
    was_training = backbone.training
    backbone.eval()
    try:
        p = patch_size or _patch_size(backbone)
        base = token_maps(backbone, x, locations, p)
        cache: Dict[GroupElement, Dict[str, torch.Tensor]] = {}
        scores = {}
        for tname, gs in transforms.items():
            gs = [gs] if isinstance(gs, GroupElement) else list(gs)
            if not gs:
                continue
            for g in gs:
                if g not in cache:
                    moved = token_maps(backbone, act(x, g, unit=p, mode=mode), locations, p)
                    cache[g] = {
                        n: F.cosine_similarity(
                            moved[n], act(base[n], g, out_size=moved[n].shape[-2:], mode=mode),
                            dim=1).flatten(1).mean(1)
                        for n in names}
            for n in names:
                scores[f'{n}/{tname}'] = torch.stack([cache[g][n] for g in gs]).mean(0)
        return scores
    finally:
        backbone.train(was_training)


def equivariance_scores(backbone: nn.Module, x: torch.Tensor,
                        transforms: Optional[Transforms] = None,
                        locations: Sequence[Location] = LOCATIONS, **kwargs) -> Dict[str, float]:
    """Batch means of :func:`per_sample_scores`."""
    return {k: float(v.mean()) for k, v in
            per_sample_scores(backbone, x, transforms, locations, **kwargs).items()}


@FUNCTIONS.register_module(name='ser_eval_transforms')
def ser_eval_transforms(eval_group: Optional[Mapping] = None) -> Dict[str, List[GroupElement]]:
    """The elements an SER algorithm is scored on: :func:`sample_transforms` of its
    ``eval_group`` option (None = the defaults, the views' group)."""
    return sample_transforms(**dict(eval_group or {}))


@FUNCTIONS.register_module(name='ser_equivariance_predict')
@torch.no_grad()
def ser_predict(model: nn.Module, inputs, data_samples=None) -> list:
    """An SER algorithm's ``predict`` mode: :func:`per_sample_scores` of its backbone on
    ``model.eval_transforms()`` (its patch size and ``resize_mode``), written into each
    data sample as ``equiv_scores`` metainfo (a new ``DataSample`` where none is given)."""
    # mmpretrain's DataSample only where SER's predict mode runs (an mmpretrain model);
    # a third-party import, no circle.
    from mmpretrain.structures import DataSample
    if isinstance(inputs, (list, tuple)):
        inputs = inputs[0]
    scores = per_sample_scores(model.backbone, inputs, model.eval_transforms(),
                               patch_size=model.patch_size, mode=model.ser_cfg['resize_mode'])
    data_samples = list(data_samples) if data_samples is not None else [None] * inputs.shape[0]
    out = []
    for i, ds in enumerate(data_samples):
        ds = DataSample() if ds is None else ds
        ds.set_field({k: float(v[i]) for k, v in scores.items()}, 'equiv_scores',
                     field_type='metainfo')
        out.append(ds)
    return out


def location_means(scores: Mapping[str, float]) -> Dict[str, float]:
    """``{'<location>/mean': mean over that location's transforms}`` (``'mean'`` for
    keys without a location)."""
    groups: Dict[str, List[float]] = {}
    for key, value in scores.items():
        loc = key.rsplit('/', 1)[0] if '/' in key else ''
        groups.setdefault(loc, []).append(value)
    return {(f'{loc}/mean' if loc else 'mean'): sum(v) / len(v) for loc, v in groups.items()}


@METRICS.register_module()
class EquivarianceMetric(BaseMetric):
    """Averages the ``equiv_scores`` an SER algorithm's ``predict`` writes into each
    data sample; reports ``equivariance/final/<t>`` (the paper's Table 4: the last
    block's normed patch tokens), ``equivariance/layer_k/<t>`` (the map the SER loss
    uses: ``ln_equiv`` of block ``k``), for ``t`` in the sampled families ``rotation``,
    ``flip``, ``scale``, ``group`` (module docstring), and ``equivariance/<location>/mean``.
    """

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
        out.update(location_means(out))
        return out


def main(argv=None):
    parser = argparse.ArgumentParser(description='Equivariance score of a checkpoint\'s '
                                     'backbone on an image folder (mean over images), at the '
                                     'final layer and at SER\'s layer k.')
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?', default=None)
    parser.add_argument('--data-root', required=True, help='ImageNet-style folder')
    parser.add_argument('--size', type=int, default=224, help='images are resized to size^2')
    parser.add_argument('--layer', type=int, action='append', default=[],
                        help='also score block LAYER (1-based, raw output; repeatable)')
    parser.add_argument('--num-samples', type=int, default=None,
                        help="group elements per family (default: the model's eval_group, "
                        'else 4)')
    parser.add_argument('--seed', type=int, default=None,
                        help="seed of the sampled elements (default: the model's, else 0)")
    parser.add_argument('--num-images', type=int, default=256)
    parser.add_argument('--batch-size', type=int, default=64)
    args = parser.parse_args(argv)

    # Importing this module imported sslreg (its package) first: every name is registered.
    cfg = Config.fromfile(args.config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = MODELS.build(cfg.model)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    ser_cfg = getattr(model, 'ser_cfg', {}) or {}
    group = dict(ser_cfg.get('eval_group') or {})
    if args.num_samples is not None:
        group['num_samples'] = args.num_samples
    if args.seed is not None:
        group['seed'] = args.seed
    transforms = sample_transforms(**group)
    mode = ser_cfg.get('resize_mode', 'bilinear')
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
        for k, v in per_sample_scores(model.backbone, x, transforms,
                                      (*LOCATIONS, *args.layer), mode=mode).items():
            totals[k] = totals.get(k, 0.0) + float(v.sum())
    scores = {k: v / n for k, v in totals.items()}
    scores.update(location_means(scores))
    for k, v in scores.items():
        print(f'equivariance/{k}: {v:.4f}')
    return scores


if __name__ == '__main__':
    main()
