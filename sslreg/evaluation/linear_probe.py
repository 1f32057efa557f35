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
