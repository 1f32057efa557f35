"""Frozen-feature evaluation of an SSL backbone: linear probe and weighted kNN.

For the small data (digits), where a full mmpretrain linear-evaluation config would
be overkill: features are extracted once with the frozen backbone, then

* :func:`linear_probe`: a linear classifier on standardized features, full-batch
  L-BFGS on the cross-entropy with an L2 penalty (deterministic, seconds on CPU);
* :func:`knn_accuracy`: DINO's weighted k-NN (cosine similarity, ``exp(sim / T)``
  votes, k = 20, T = 0.07).

Usage::

    train_x, train_y = extract_features(model.backbone, train_loader, model.data_preprocessor)
    test_x, test_y = extract_features(model.backbone, test_loader, model.data_preprocessor)
    top1 = linear_probe(train_x, train_y, test_x, test_y)
"""
from typing import Iterable, Tuple

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
def extract_features(backbone: nn.Module, batches: Iterable, data_preprocessor=None
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Features ``(N, C)`` (the backbone's last output; ``(B, C, h, w)`` maps are
    average-pooled) and labels ``(N,)`` of every batch. ``batches`` yields
    dataloader batches (``dict(inputs=..., data_samples=...)``); ``data_preprocessor``
    (the model's) normalizes them."""
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
            out = backbone(x)
            out = out[-1] if isinstance(out, (list, tuple)) else out
            if out.dim() == 4:
                out = out.mean(dim=(2, 3))
            feats.append(out.float())
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
# on a fraction (1% or 100%) of the labels.


def label_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a class-balanced ``fraction`` of a labelled set.

    Each class ``c`` keeps ``max(1, round(fraction * n_c))`` of its ``n_c`` samples, drawn
    by a generator seeded with ``seed``: the subset depends only on the labels and the
    seed, so every method evaluated on a dataset sees the same images. ``fraction=1``
    keeps everything.
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
        n = max(1, int(round(fraction * members.numel())))
        keep.append(members[torch.randperm(members.numel(), generator=gen)[:n]])
    return torch.cat(keep).sort().values


def _cosine_lr(base_lr: float, step: int, total: int) -> float:
    import math
    return 0.5 * base_lr * (1 + math.cos(math.pi * step / max(total, 1)))


def train_linear_classifier(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int,
                            epochs: int = 50, lr: float = 0.05, momentum: float = 0.9,
                            batch_size: int = 256, weight_decay: float = 0.0, seed: int = 0,
                            standardize: bool = True) -> nn.Module:
    """Linear classifier on frozen features, SGD with a cosine learning rate (per
    iteration) over ``epochs`` of shuffled mini-batches.

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
    opt = torch.optim.SGD(clf.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    x = norm(train_x)
    n = x.shape[0]
    per_epoch = (n + batch_size - 1) // batch_size
    total, step = epochs * per_epoch, 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                for group in opt.param_groups:
                    group['lr'] = _cosine_lr(lr, step, total)
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


def finetune(backbone: nn.Module, num_classes: int, feat_dim: int, images: torch.Tensor,
             labels: torch.Tensor, normalize, epochs: int = 50, lr: float = 0.05,
             momentum: float = 0.9, batch_size: int = 256, weight_decay: float = 0.0,
             seed: int = 0, backbone_lr_mult: float = 1.0) -> nn.Module:
    """Backbone + linear classifier trained end to end (BN in training mode) with the
    same SGD/cosine protocol; ``images`` are raw (uint8) and ``normalize`` maps a batch
    of them to the network's input. Returns ``nn.Sequential``-like ``(backbone, head)``
    as a module whose ``forward`` gives logits."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(feat_dim, num_classes)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=gen)
        head.bias.zero_()
    model = _Classifier(backbone, head)
    opt = torch.optim.SGD([
        dict(params=backbone.parameters(), lr=lr * backbone_lr_mult, mult=backbone_lr_mult),
        dict(params=head.parameters(), lr=lr, mult=1.0)], lr=lr, momentum=momentum,
        weight_decay=weight_decay)
    n = images.shape[0]
    per_epoch = (n + batch_size - 1) // batch_size
    total, step = epochs * per_epoch, 0
    model.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                if idx.numel() < 2 and n >= 2:  # BN needs two samples
                    idx = order[-2:]
                for group in opt.param_groups:
                    group['lr'] = _cosine_lr(lr, step, total) * group['mult']
                loss = F.cross_entropy(model(normalize(images[idx])), labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
    return model.eval()


class _Classifier(nn.Module):

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        return self.head(pooled(self.backbone(x)))


__all__ += ['label_subset', 'train_linear_classifier', 'finetune', 'pooled']
