r"""Neural-collapse and rank diagnostics of features: functions and a val/test metric.

All functions take features ``(N, C)`` (one row per sample) and integer class labels
``(N,)``; statistics are computed in float64.

**CDNV** (class-distance normalized variance; Galanti, György, Hutter, "On the Role
of Neural Collapse in Transfer Learning", ICLR 2022). With :math:`\mu_c` the mean
feature of class :math:`c` and

.. math::

    \mathrm{Var}_c = \frac{1}{N_c} \sum_{k: y_k = c} \lVert f_k - \mu_c \rVert^2

(the mean squared distance of the class's features to their mean; divide by
:math:`N_c`, not :math:`N_c - 1`),

.. math::

    \mathrm{CDNV} = \frac{1}{K(K-1)} \sum_{i \neq j}
        \frac{\mathrm{Var}_i + \mathrm{Var}_j}{2 \lVert \mu_i - \mu_j \rVert^2}

over the :math:`K` classes present (the summand is symmetric, so this is also the
mean over unordered pairs). Small CDNV = collapsed classes; the VCReg paper (Table 6)
reads a higher CDNV as less neural collapse. For two isotropic Gaussian classes
:math:`\mathcal N(\mu_i, \sigma^2 I_d)` it tends to :math:`d\sigma^2 / \lVert\mu_1-\mu_2\rVert^2`.

**NCC** (nearest class centre): :math:`\hat y_k = \arg\min_c \lVert f_k - \mu_c \rVert`.
*NCC accuracy* is the fraction of samples with :math:`\hat y_k = y_k`; *NCC agreement*
the fraction whose NCC prediction equals the network's prediction (VCReg paper, Table 6:
lower agreement = less collapse). Class means default to those of the features given
(the evaluated set itself); pass ``means`` to use, e.g., training-set means.

**Rank** of the feature matrix: the number of singular values above
``rtol * sigma_max`` (default ``rtol = max(N, C) * eps`` of the features' dtype, as
``numpy.linalg.matrix_rank``). **Effective rank** (Roy & Vetterli, "The effective rank:
a measure of effective dimensionality", EUSIPCO 2007): with singular values
:math:`\sigma_i` and :math:`p_i = \sigma_i / \sum_j \sigma_j`,

.. math::

    \mathrm{erank} = \exp\Bigl(-\sum_i p_i \log p_i\Bigr)

(1 for a rank-1 matrix, ``n`` for ``n`` equal singular values, e.g. the identity).
Neither centres the features unless ``center=True``.

In val/test, :class:`FeatureCollapseMetric` computes these per layer from the pooled
features that :class:`~sslreg.evaluation.layer_features.LayerFeatureHook` puts into
each data sample, and averages the hook's per-batch regularizer diagnostics.
"""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

__all__ = ['class_means', 'cdnv', 'ncc_predict', 'ncc_accuracy', 'ncc_agreement',
           'feature_rank', 'effective_rank', 'FeatureCollapseMetric']


def _as_2d(features: torch.Tensor) -> torch.Tensor:
    features = torch.as_tensor(features)
    if features.dim() != 2:
        raise ValueError(f'features must be (N, C), got shape {tuple(features.shape)}')
    return features.detach().to(torch.float64)


def _as_labels(labels, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels).reshape(-1).long()
    if labels.numel() != n:
        raise ValueError(f'got {labels.numel()} labels for {n} feature rows')
    return labels


def class_means(features: torch.Tensor, labels) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(classes, means)``: the sorted classes present ``(K,)`` and their mean
    features ``(K, C)`` (float64)."""
    f = _as_2d(features)
    y = _as_labels(labels, f.shape[0])
    classes, inverse = torch.unique(y, sorted=True, return_inverse=True)
    sums = torch.zeros(len(classes), f.shape[1], dtype=f.dtype).index_add_(0, inverse, f)
    counts = torch.bincount(inverse, minlength=len(classes)).to(f.dtype)
    return classes, sums / counts[:, None]


def cdnv(features: torch.Tensor, labels) -> float:
    """Class-distance normalized variance, averaged over ordered pairs of distinct
    classes (module docstring). Needs at least two classes; ``inf`` if two class
    means coincide."""
    f = _as_2d(features)
    y = _as_labels(labels, f.shape[0])
    classes, means = class_means(f, y)
    if len(classes) < 2:
        raise ValueError(f'CDNV needs at least two classes, got {classes.tolist()}')
    inverse = torch.searchsorted(classes, y)
    sq = (f - means[inverse]).square().sum(1)
    counts = torch.bincount(inverse, minlength=len(classes)).to(f.dtype)
    var = torch.zeros(len(classes), dtype=f.dtype).index_add_(0, inverse, sq) / counts
    dist2 = torch.cdist(means, means).square()
    off = ~torch.eye(len(classes), dtype=torch.bool)
    ratio = (var[:, None] + var[None, :])[off] / (2 * dist2[off])
    return float(ratio.mean())


def ncc_predict(features: torch.Tensor, classes: torch.Tensor, means: torch.Tensor,
                chunk: int = 4096) -> torch.Tensor:
    """Nearest-class-centre labels ``(N,)`` of ``features`` given ``classes`` ``(K,)``
    and their ``means`` ``(K, C)``."""
    f = _as_2d(features)
    means = torch.as_tensor(means, dtype=torch.float64)
    out = [torch.cdist(f[i:i + chunk], means).argmin(1) for i in range(0, f.shape[0], chunk)]
    return torch.as_tensor(classes)[torch.cat(out)] if out else torch.zeros(0, dtype=torch.long)


def _ncc(features, labels, means):
    f = _as_2d(features)
    y = _as_labels(labels, f.shape[0])
    classes, mu = class_means(f, y) if means is None else means
    return ncc_predict(f, classes, mu), y


def ncc_accuracy(features: torch.Tensor, labels,
                 means: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> float:
    """Fraction (0..1) of samples whose nearest class centre is their own class.
    ``means``: ``(classes, means)`` from :func:`class_means` (default: of ``features``)."""
    pred, y = _ncc(features, labels, means)
    return float((pred == y).double().mean())


def ncc_agreement(features: torch.Tensor, labels, predictions,
                  means: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> float:
    """Fraction (0..1) of samples whose NCC prediction equals the network's
    ``predictions`` ``(N,)``. Class means: of ``features`` with ``labels`` (the true
    classes), unless ``means`` is given."""
    pred, _ = _ncc(features, labels, means)
    net = _as_labels(predictions, pred.shape[0])
    return float((pred == net).double().mean())


def _singular_values(features, center: bool) -> Tuple[torch.Tensor, torch.dtype]:
    raw = torch.as_tensor(features)
    f = _as_2d(raw)
    if center:
        f = f - f.mean(0, keepdim=True)
    dtype = raw.dtype if raw.is_floating_point() else torch.float64
    return torch.linalg.svdvals(f), dtype


def feature_rank(features: torch.Tensor, rtol: Optional[float] = None,
                 center: bool = False) -> int:
    """Numerical rank of the ``(N, C)`` feature matrix (module docstring)."""
    s, dtype = _singular_values(features, center)
    if s.numel() == 0 or s[0] == 0:
        return 0
    if rtol is None:
        rtol = max(torch.as_tensor(features).shape) * torch.finfo(dtype).eps
    return int((s > rtol * s[0]).sum())


def effective_rank(features: torch.Tensor, center: bool = False) -> float:
    """Roy & Vetterli's effective rank ``exp(H(sigma / sum sigma))`` (module docstring)."""
    s, _ = _singular_values(features, center)
    total = s.sum()
    if total == 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


# --------------------------------------------------------------------------- the metric


def _field(ds, key):
    if isinstance(ds, dict):
        value = ds.get(key)
        if value is None:
            value = ds.get('metainfo', {}).get(key)
        return value
    return ds.get(key) if hasattr(ds, 'get') else getattr(ds, key, None)


def _label(value) -> Optional[int]:
    if value is None:
        return None
    if torch.is_tensor(value):
        return int(value.reshape(-1)[0]) if value.numel() else None
    return int(value)


@METRICS.register_module()
class FeatureCollapseMetric(BaseMetric):
    """CDNV, NCC accuracy / agreement, rank and effective rank of the features of
    chosen layers, plus the regularizers' own diagnostics, on the val/test set.

    Reads what :class:`~sslreg.evaluation.layer_features.LayerFeatureHook` writes into
    every data sample during val/test (add both to the config)::

        custom_hooks = [dict(type='LayerFeatureHook', layers=['backbone.layer3', 'neck'],
                             vcreg_layers='backbone.layer*.*')]
        val_evaluator = [dict(type='Accuracy', topk=(1, )), dict(type='FeatureCollapseMetric')]

    Reports, for each captured layer ``L`` (key prefix ``collapse/``):

    * ``L/cdnv``, ``L/ncc_acc``, ``L/ncc_agreement`` when the data samples carry a class
      label (``gt_label``; ``pred_label`` for the agreement: classifiers). Class means
      are those of the evaluated set; accuracies are fractions in [0, 1];
    * ``L/rank``, ``L/erank`` of the ``(N, C)`` pooled-feature matrix;
    * the hook's per-batch diagnostics averaged over samples: ``L/vcreg_variance``,
      ``L/vcreg_covariance`` (VCReg's two terms before alpha, beta and the loss weight),
      ``L/<name>_error`` (a ρSIM/SIM regularizer ``<name>``'s unweighted block loss).

    All features of the set are kept until the end of the epoch: ``N x sum(C)`` floats.

    Args:
        metrics: any of 'cdnv', 'ncc', 'rank' (rank and effective rank).
        center_rank: centre the features before the ranks.
        rank_rtol: relative singular-value threshold of the rank (default: see
            :func:`feature_rank`).
    """

    default_prefix = 'collapse'
    METRICS_ = ('cdnv', 'ncc', 'rank')

    def __init__(self, metrics: Sequence[str] = METRICS_, center_rank: bool = False,
                 rank_rtol: Optional[float] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = set(metrics) - set(self.METRICS_)
        if unknown:
            raise ValueError(f'unknown metrics {sorted(unknown)}; choose from {self.METRICS_}')
        self.metrics, self.center_rank, self.rank_rtol = metrics, center_rank, rank_rtol

    def process(self, data_batch, data_samples: Sequence) -> None:
        for ds in data_samples:
            feats, stats = _field(ds, 'layer_features'), _field(ds, 'layer_stats')
            if feats is None and stats is None:
                raise KeyError(
                    'FeatureCollapseMetric: the data samples carry no layer_features: add '
                    "custom_hooks=[dict(type='LayerFeatureHook', layers=[...])] to the config")
            self.results.append(dict(
                features={k: v.detach().float().cpu() for k, v in (feats or {}).items()},
                stats=dict(stats or {}), gt=_label(_field(ds, 'gt_label')),
                pred=_label(_field(ds, 'pred_label'))))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        out: Dict[str, float] = {}
        labelled = all(r['gt'] is not None for r in results)
        predicted = labelled and all(r['pred'] is not None for r in results)
        layers = list(dict.fromkeys(k for r in results for k in r['features']))
        for layer in layers:
            rows = [r for r in results if layer in r['features']]
            f = torch.stack([r['features'][layer].reshape(-1) for r in rows])
            if labelled:
                y = torch.tensor([r['gt'] for r in rows])
                if 'cdnv' in self.metrics and len(y.unique()) > 1:
                    out[f'{layer}/cdnv'] = cdnv(f, y)
                if 'ncc' in self.metrics:
                    means = class_means(f, y)
                    out[f'{layer}/ncc_acc'] = ncc_accuracy(f, y, means)
                    if predicted:
                        pred = torch.tensor([r['pred'] for r in rows])
                        out[f'{layer}/ncc_agreement'] = ncc_agreement(f, y, pred, means)
            if 'rank' in self.metrics:
                out[f'{layer}/rank'] = float(feature_rank(f, self.rank_rtol, self.center_rank))
                out[f'{layer}/erank'] = effective_rank(f, self.center_rank)
        sums, counts = defaultdict(float), defaultdict(int)
        for r in results:
            for key, value in r['stats'].items():
                sums[key] += float(value)
                counts[key] += 1
        out.update({key: sums[key] / counts[key] for key in sums})
        return out
