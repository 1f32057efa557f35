"""k-nearest-neighbour classification on frozen features (MCR's 5-NN protocol).

The training features are the memory bank; each test feature takes the labels of its
``k`` nearest training features and votes:

* ``vote='majority'`` (default; what "5-NN" plainly means, and W-MSE's ``eval_knn``,
  the ResNet-18 CIFAR / STL-10 / Tiny-ImageNet benchmark MCR's configs follow): one vote
  per neighbour, the most frequent label wins; a tie goes to the **smallest** label
  (scikit-learn's ``KNeighborsClassifier(weights='uniform')`` and W-MSE's
  ``unique(...).argmax()`` do the same).
* ``vote='weighted'``: InstDisc / DINO's weighted kNN, neighbour ``j`` votes
  ``exp(s_j / T)`` with its cosine similarity ``s_j`` (``T = 0.07``) -- what
  :func:`sslreg.evaluation.knn_accuracy` computes at k = 20.

Nearness: ``metric='cosine'`` (default) ranks by the cosine similarity, i.e. by the
Euclidean distance of L2-normalized features; ``'euclidean'`` by the distance of the raw
features (W-MSE). The test set is never in the memory bank, so no self-match is removed.

Usage::

    preds = knn_predict(train_x, train_y, test_x, k=5)           # (N_test,) labels
    top1 = knn_top1(train_x, train_y, test_x, test_y, k=5)       # accuracy in %
"""
import torch
import torch.nn.functional as F

__all__ = ['knn_predict', 'knn_top1']

VOTES = ('majority', 'weighted')
METRICS = ('cosine', 'euclidean')


@torch.no_grad()
def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                k: int = 5, metric: str = 'cosine', vote: str = 'majority',
                temperature: float = 0.07, num_classes: int = None,
                chunk_size: int = 1024) -> torch.Tensor:
    """Predicted labels ``(N_test,)`` of a k-NN classifier (see the module docstring).

    ``chunk_size`` test features are compared with the whole bank at a time (an
    ImageNet bank of 1.28 M features then needs ``chunk_size x 1.28 M`` scores).
    """
    if vote not in VOTES:
        raise ValueError(f'vote must be one of {VOTES}, got {vote!r}')
    if metric not in METRICS:
        raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')
    if vote == 'weighted' and metric != 'cosine':
        raise ValueError("vote='weighted' weighs by exp(cosine similarity / T): use "
                         "metric='cosine'")
    if k < 1:
        raise ValueError(f'k must be >= 1, got {k}')
    dtype = train_x.dtype if train_x.is_floating_point() else torch.float32
    bank, train_y = train_x.to(dtype), torch.as_tensor(train_y).reshape(-1).long()
    if metric == 'cosine':
        bank = F.normalize(bank, dim=1)
    num_classes = num_classes or int(train_y.max()) + 1
    k = min(k, bank.shape[0])
    # float32 scores can misorder neighbours closer than its rounding (~1e-7); the best
    # k + 16 candidates are re-scored in float64, so the neighbours are those of the exact
    # similarity of the given features (as scikit-learn's float64 computation finds them).
    refine = dtype != torch.float64
    n_cand = min(bank.shape[0], k + 16) if refine else k
    preds = []
    for start in range(0, test_x.shape[0], chunk_size):
        query = test_x[start:start + chunk_size].to(dtype)
        if metric == 'cosine':
            score = F.normalize(query, dim=1) @ bank.T  # larger = nearer
        else:
            score = -torch.cdist(query, bank)
        top, idx = score.topk(n_cand, dim=1)
        if refine:
            q64, cand = query.double(), train_x[idx].double()  # (B, n_cand, D)
            if metric == 'cosine':
                top = torch.einsum('bd,bnd->bn', F.normalize(q64, dim=1),
                                   F.normalize(cand, dim=2))
            else:
                top = -(cand - q64[:, None]).norm(dim=2)
            top, order = top.topk(k, dim=1)
            idx = idx.gather(1, order)
        weights = (top / temperature).exp() if vote == 'weighted' else torch.ones_like(top)
        votes = torch.zeros(query.shape[0], num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_y[idx], weights)
        preds.append(votes.argmax(1))  # the first maximum: ties go to the smallest label
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def knn_top1(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
             test_y: torch.Tensor, **kwargs) -> float:
    """Top-1 accuracy (%) of :func:`knn_predict` (same keyword arguments)."""
    preds = knn_predict(train_x, train_y, test_x, **kwargs)
    return float((preds == torch.as_tensor(test_y).reshape(-1)).float().mean() * 100)
