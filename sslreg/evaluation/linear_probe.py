"""Frozen-feature evaluation of an SSL backbone: linear probe and weighted kNN.

For the small data (digits), where a full mmpretrain linear-evaluation config would
be overkill: features are extracted once with the frozen backbone, then

* :func:`linear_probe`: a linear classifier on standardized features, full-batch
  L-BFGS on the cross-entropy with an L2 penalty (deterministic, seconds on CPU);
* :func:`knn_accuracy`: DINO's weighted k-NN (cosine similarity, ``exp(sim / T)``
  votes, k = 20, T = 0.07); :mod:`sslreg.evaluation.knn` has the general k-NN (majority
  or weighted votes; MCR's 5-NN).

The papers' protocols of ``tools/linear_eval.py`` (``configs/eval/``) are built from the
second half of this file: :func:`label_subset` (class-balanced, seeded label fractions),
:func:`feature_extractor` (``'pooled'`` or SER's ``'last_blocks_cls'``: the [CLS] tokens of
a ViT's last 4 blocks concatenated), :func:`train_linear_classifier` (SGD, cosine, optional
warm-up) and :func:`finetune`.

Usage::

    train_x, train_y = extract_features(model.backbone, train_loader, model.data_preprocessor)
    test_x, test_y = extract_features(model.backbone, test_loader, model.data_preprocessor)
    top1 = linear_probe(train_x, train_y, test_x, test_y)
"""
import math
from contextlib import contextmanager
from typing import Callable, Iterable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['extract_features', 'linear_probe', 'knn_accuracy']


def _labels(data_samples) -> torch.Tensor:
    out = []
    for ds in data_samples:
        label = ds.gt_label if hasattr(ds, 'gt_label') else ds['gt_label']
        out.append(int(label.reshape(-1)[0]) if torch.is_tensor(label) else int(label))
    return torch.tensor(out)


@torch.no_grad()
def extract_features(backbone: nn.Module, batches: Iterable, data_preprocessor=None,
                     features: Optional[Callable] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, C)`` and labels ``(N,)`` of every batch. ``batches`` yields
    dataloader batches (``dict(inputs=..., data_samples=...)``); ``data_preprocessor``
    (the model's) normalizes them. ``features(backbone, x)`` reads the features of a
    batch (default :func:`pooled_output`: the backbone's last output, ``(B, C, h, w)``
    maps average-pooled; :func:`feature_extractor` builds the others)."""
    features = features or pooled_output
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    try:
        for data in batches:
            if data_preprocessor is not None:
                inputs = data['inputs']
                if isinstance(inputs, list) and torch.is_tensor(inputs[0]) and inputs[0].dim() == 3:
                    data = dict(data, inputs=torch.stack(inputs))
                data = data_preprocessor(data, False)
            x = data['inputs']
            x = x[0] if isinstance(x, (list, tuple)) else x
            feats.append(features(backbone, x).float())
            labels.append(_labels(data['data_samples']))
    finally:
        backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, weight_decay: float = 1e-4, max_iter: int = 200) -> float:
    """Top-1 accuracy (%) of an L2-regularized multinomial logistic regression."""
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True) + 1e-6
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    clf = nn.Linear(xtr.shape[1], num_classes)
    nn.init.zeros_(clf.weight)
    nn.init.zeros_(clf.bias)
    opt = torch.optim.LBFGS(clf.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(clf(xtr), train_y) + weight_decay * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((clf(xte).argmax(1) == test_y).float().mean() * 100)


@torch.no_grad()
def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy (%) of DINO's weighted k-NN classifier on cosine similarity."""
    xtr, xte = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    k = min(k, xtr.shape[0])
    sim, idx = (xte @ xtr.T).topk(k, dim=1)
    votes = torch.zeros(xte.shape[0], num_classes)
    votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
    return float((votes.argmax(1) == test_y).float().mean() * 100)


# ---------------------------------------------------------------- label-fraction protocol
# The SGD linear evaluation of tools/linear_eval.py (shared by the SSL methods): a linear
# classifier on the frozen backbone's features, or the whole network fine-tuned, trained
# on a fraction (1%, 10% or 100%) of the labels.


def label_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a class-balanced ``fraction`` of a labelled set.

    Each class ``c`` keeps :func:`per_class_count` ``(n_c, fraction)`` =
    ``max(1, round(fraction * n_c))`` of its ``n_c`` samples (Python's ``round``: the
    nearest integer, halves to the even one, e.g. 10% of 25 -> 2, of 35 -> 4), drawn by a
    generator seeded with ``seed``: the subset depends only on the labels and the seed,
    so every method evaluated on a dataset sees the same images. ``fraction=1`` keeps
    everything.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f'fraction must be in (0, 1], got {fraction}')
    labels = torch.as_tensor(labels).reshape(-1)
    if fraction == 1:
        return torch.arange(labels.numel())
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).reshape(-1)
        n = per_class_count(members.numel(), fraction)
        keep.append(members[torch.randperm(members.numel(), generator=gen)[:n]])
    return torch.cat(keep).sort().values


def per_class_count(n: int, fraction: float) -> int:
    """How many of a class's ``n`` samples :func:`label_subset` keeps:
    ``max(1, round(fraction * n))`` (``n`` itself for ``fraction=1``)."""
    return n if fraction == 1 else max(1, int(round(fraction * n)))


def _lr_at(base_lr: float, step: int, total: int, warmup: int = 0,
           milestones: Sequence[int] = ()) -> float:
    """Per-iteration learning rate: linear warm-up over ``warmup`` steps (none by
    default), then a cosine from ``base_lr`` to 0 over the remaining steps, or, given
    ``milestones`` (steps), ``base_lr`` times 0.1 per milestone passed (a step schedule)."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if milestones:
        return base_lr * 0.1 ** sum(step >= m for m in milestones)
    return 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def _cosine_lr(base_lr: float, step: int, total: int) -> float:
    return _lr_at(base_lr, step, total)


#: ``optimizer`` of the linear / fine-tuning protocols: SGD (momentum, ``nesterov``) or
#: AdamW (torch's defaults betas=(0.9, 0.999), eps=1e-8; decoupled ``weight_decay``;
#: ``momentum`` and ``nesterov`` unused), e.g. the VCReg paper's hierarchical probe.
OPTIMIZERS = ('sgd', 'adamw')


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, nesterov: bool = False):
    """``torch.optim.SGD`` or ``AdamW`` (:data:`OPTIMIZERS`) over ``params``."""
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov)
    if name == 'adamw':
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {name!r}')


def train_linear_classifier(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                            epochs: int = 50, lr: float = 0.05, momentum: float = 0.9,
                            batch_size: int = 256, weight_decay: float = 0.0, seed: int = 0,
                            standardize: bool = True, warmup_epochs: int = 0,
                            lr_steps: Sequence[int] = (), nesterov: bool = False,
                            optimizer: str = 'sgd') -> nn.Module:
    """Linear classifier on frozen features, SGD (``optimizer='adamw'``: AdamW,
    :func:`make_optimizer`) with a cosine learning rate (per
    iteration, after ``warmup_epochs`` of linear warm-up: none by default) over
    ``epochs`` of shuffled mini-batches; ``lr_steps`` (epochs, e.g. ``(4, 8, 12)``)
    replaces the cosine by x0.1 steps at those epochs; ``nesterov`` momentum.

    With ``standardize`` the features are centred and scaled by the statistics of the
    training features (what a non-affine BatchNorm before the classifier does at test
    time), folded into the returned ``nn.Sequential``.
    """
    gen = torch.Generator().manual_seed(seed)
    mean = train_x.mean(0) if standardize else torch.zeros(train_x.shape[1])
    std = (train_x.std(0, unbiased=False) + 1e-6) if standardize else torch.ones(train_x.shape[1])
    norm = _Standardize(mean, std)
    clf = nn.Linear(train_x.shape[1], num_classes)
    with torch.no_grad():
        clf.weight.normal_(0, 0.01, generator=gen)
        clf.bias.zero_()
    opt = make_optimizer(optimizer, clf.parameters(), lr, momentum, weight_decay, nesterov)
    x = norm(train_x)
    n = x.shape[0]
    per_epoch = (n + batch_size - 1) // batch_size
    total, step, warmup = epochs * per_epoch, 0, warmup_epochs * per_epoch
    milestones = [int(e) * per_epoch for e in lr_steps]
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                for group in opt.param_groups:
                    group['lr'] = _lr_at(lr, step, total, warmup, milestones)
                loss = F.cross_entropy(clf(x[idx]), train_y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
    return nn.Sequential(norm, clf).eval()


class _Standardize(nn.Module):

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer('mean', mean.clone())
        self.register_buffer('std', std.clone())

    def forward(self, x):
        return (x - self.mean) / self.std


def pooled(features) -> torch.Tensor:
    """The backbone's last output, average-pooled to ``(N, C)``."""
    out = features[-1] if isinstance(features, (list, tuple)) else features
    return out.mean(dim=(2, 3)) if out.dim() == 4 else out


def pooled_output(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Feature reader ``'pooled'``: :func:`pooled` of ``backbone(x)`` (a ResNet's last
    stage average-pooled; a ViT's output as its ``out_type`` says)."""
    return pooled(backbone(x))


# ------------------------------------------------------------- ViT: [CLS] of the last blocks


@contextmanager
def _vit_outputs(backbone: nn.Module, indices: Sequence[int], out_type: str):
    """``backbone`` (an mmpretrain ``VisionTransformer`` or a subclass) temporarily
    returning ``out_type`` at blocks ``indices``."""
    saved = backbone.out_indices, backbone.out_type
    backbone.out_indices, backbone.out_type = list(indices), out_type
    try:
        yield backbone
    finally:
        backbone.out_indices, backbone.out_type = saved


def cls_block_indices(backbone: nn.Module, num_blocks: int = 4) -> list:
    """0-based indices of the last ``num_blocks`` transformer blocks of a ViT, checked
    to carry a [CLS] token that went through at least one block.

    mmpretrain's ``VisionTransformer`` has it from the input on. ``LateClsViT`` inserts it
    after block ``k = cls_insert_layer`` (1-based), so block index ``i`` (0-based) outputs a
    processed [CLS] only for ``i >= k``: the last ``n`` blocks need ``k <= depth - n``.
    """
    if not (hasattr(backbone, 'layers') and hasattr(backbone, 'out_indices')
            and hasattr(backbone, 'out_type')):
        raise TypeError(f'{type(backbone).__name__} is not an mmpretrain VisionTransformer: '
                        "the 'last_blocks_cls' features need its out_indices / out_type")
    if getattr(backbone, 'cls_token', None) is None:
        raise ValueError(f'{type(backbone).__name__} has no [CLS] token (with_cls_token=False)')
    depth = len(backbone.layers)
    if not 1 <= num_blocks <= depth:
        raise ValueError(f'num_blocks must be in [1, {depth}] (blocks of this ViT), got '
                         f'{num_blocks}')
    k = int(getattr(backbone, 'cls_insert_layer', 0))
    if k > depth - num_blocks:
        raise ValueError(
            f'{type(backbone).__name__} inserts the [CLS] token after block {k} of {depth}: '
            f'the last {num_blocks} blocks do not all carry a processed [CLS] token (needs '
            f'cls_insert_layer <= {depth - num_blocks}); lower num_blocks or cls_insert_layer')
    return list(range(depth - num_blocks, depth))


def last_blocks_cls(backbone: nn.Module, x: torch.Tensor, num_blocks: int = 4,
                    norm_each: bool = False) -> torch.Tensor:
    """Feature reader ``'last_blocks_cls'`` (SER's, after DINO's ``n_last_blocks=4``): the
    [CLS] tokens of the last ``num_blocks`` transformer blocks concatenated, earliest
    first: ``(B, num_blocks * C)``.

    Each token is what the backbone itself returns for ``out_type='cls_token'`` at that
    ``out_indices`` entry -- mmpretrain's convention: the final LayerNorm (``ln1``, when
    ``final_norm``) is applied to the last block's output only, the others are raw block
    outputs. ``norm_each=True`` applies ``ln1`` to every one of them instead (DINO's
    ``get_intermediate_layers``, whose outputs all pass through ``norm``).
    """
    indices = cls_block_indices(backbone, num_blocks)
    with _vit_outputs(backbone, indices, 'cls_token'):
        tokens = list(backbone(x))
    if norm_each and getattr(backbone, 'final_norm', False):
        tokens[:-1] = [backbone.ln1(t) for t in tokens[:-1]]
    return torch.cat(tokens, dim=1)


FEATURES = dict(pooled=pooled_output, last_blocks_cls=last_blocks_cls)


def feature_extractor(spec=None) -> Callable:
    """``features(backbone, x) -> (B, D)`` from a spec: ``None`` / ``'pooled'`` /
    ``dict(type='pooled')`` (:func:`pooled_output`) or ``dict(type='last_blocks_cls',
    num_blocks=4, norm_each=False)`` (:func:`last_blocks_cls`)."""
    if spec is None:
        spec = dict(type='pooled')
    spec = dict(type=spec) if isinstance(spec, str) else dict(spec)
    kind = spec.pop('type', 'pooled')
    if kind not in FEATURES:
        raise ValueError(f'unknown features type {kind!r}; choose from {sorted(FEATURES)}')
    fn = FEATURES[kind]
    if not spec:
        return fn

    def features(backbone, x):
        return fn(backbone, x, **spec)
    features.__name__ = f'{kind}({", ".join(f"{k}={v!r}" for k, v in spec.items())})'
    return features


# ------------------------------------------------------------------------------ fine-tuning


def finetune(backbone: nn.Module, num_classes: int, feat_dim: int, images: torch.Tensor,
             labels: torch.Tensor, normalize, epochs: int = 50, lr: float = 0.05,
             momentum: float = 0.9, batch_size: int = 256, weight_decay: float = 0.0,
             seed: int = 0, backbone_lr_mult: float = 1.0, warmup_epochs: int = 0,
             features: Optional[Callable] = None, lr_steps: Sequence[int] = (),
             nesterov: bool = False, optimizer: str = 'sgd') -> nn.Module:
    """Backbone + linear classifier trained end to end (BN in training mode) with the
    same SGD/cosine (or ``lr_steps``) protocol; ``images`` are raw (uint8) and
    ``normalize`` maps a batch of them to the network's input; ``features(backbone, x)``
    reads the classifier's input (default :func:`pooled_output`). Returns a module whose
    ``forward`` gives logits."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(feat_dim, num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    model = _Classifier(backbone, head, features)
    opt = make_optimizer(optimizer, [
        dict(params=backbone.parameters(), lr=lr * backbone_lr_mult, mult=backbone_lr_mult),
        dict(params=head.parameters(), lr=lr, mult=1.0)], lr, momentum, weight_decay, nesterov)
    n = images.shape[0]
    per_epoch = (n + batch_size - 1) // batch_size
    total, step, warmup = epochs * per_epoch, 0, warmup_epochs * per_epoch
    milestones = [int(e) * per_epoch for e in lr_steps]
    model.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                if idx.numel() < 2 and n >= 2:  # BN needs two samples
                    idx = order[-2:]
                for group in opt.param_groups:
                    group['lr'] = _lr_at(lr, step, total, warmup, milestones) * group['mult']
                loss = F.cross_entropy(model(normalize(images[idx])), labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
    return model.eval()


class _Classifier(nn.Module):

    def __init__(self, backbone, head, features=None):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.features = features or pooled_output

    def forward(self, x):
        return self.head(self.features(self.backbone, x))


__all__ += ['label_subset', 'make_optimizer', 'OPTIMIZERS', 'per_class_count',
            'train_linear_classifier', 'finetune', 'pooled', 'pooled_output',
            'last_blocks_cls', 'cls_block_indices', 'feature_extractor']
