r"""DeCov: decorrelating the activations of one layer (the VCReg paper's baseline).

Cogswell, Ahmed, Girshick, Zitnick, Batra, "Reducing Overfitting in Deep Networks by
Decorrelating Representations", ICLR 2016 (arXiv:1511.06068), Sec. 3. For a batch of
:math:`N` activations :math:`h^n \in \mathbb{R}^d` of one hidden layer, the covariance

.. math::

    C_{ij} = \frac{1}{N} \sum_{n=1}^{N} (h_i^n - \mu_i)(h_j^n - \mu_j),
    \qquad \mu_i = \frac{1}{N} \sum_{n=1}^{N} h_i^n

(biased, :math:`1/N`, as the paper writes it) and the loss

.. math::

    \mathcal{L}_{DeCov} = \frac{1}{2} \bigl( \|C\|_F^2 - \|\mathrm{diag}(C)\|_2^2 \bigr)
                        = \frac{1}{2} \sum_{i \neq j} C_{ij}^2

a sum (not a mean) over the :math:`d(d-1)` off-diagonal entries: its scale grows with
:math:`d^2`, so its weight :math:`\lambda` depends on the layer's width. It is added to the
task loss as :math:`\lambda \mathcal{L}_{DeCov}`; the paper puts it on one layer (the
penultimate, fully connected, one). Unlike VCReg there is no variance term: nothing stops
the features from shrinking, which lowers every :math:`C_{ij}` too.

As VCReg (:mod:`sslreg.losses.vcreg`), every axis but ``channel_dim`` is read as samples
(an ``(N, d)`` feature gives ``N``; an ``(N, d, H, W)`` map ``N H W``), statistics are
taken in at least float32 and two-pass (mean, then centred products). ``unbiased=True``
uses :math:`1/(N-1)` instead (not the paper's). No cross-device reduction: each process
penalizes its own batch (the paper trains on one GPU).

Usage::

    from sslreg.losses import decov_loss
    h = model.features(x)                     # (N, d)
    loss = task_loss + 0.1 * decov_loss(h)    # lambda: a choice, see the configs
"""
import torch

__all__ = ['decov_loss', 'decov_covariance']


def decov_covariance(h: torch.Tensor, channel_dim: int = 1,
                     unbiased: bool = False) -> torch.Tensor:
    r"""The covariance :math:`C` (``(d, d)``) of ``h``'s samples: every axis but
    ``channel_dim`` is a sample axis; :math:`1/N` (``unbiased=False``, the paper's) or
    :math:`1/(N-1)`. Float32 (float64 for float64 input), differentiable."""
    if h.dim() < 2 or not -h.dim() <= channel_dim < h.dim():
        raise ValueError(f'channel_dim={channel_dim} does not fit h of shape {tuple(h.shape)}: '
                         'DeCov needs at least 2 axes (samples and channels)')
    d = h.shape[channel_dim]
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
    with torch.autocast(h.device.type, enabled=False):
        z = h.movedim(channel_dim, -1).reshape(-1, d).to(dtype)
        n = z.shape[0]
        if n < 2:
            raise ValueError(f'DeCov needs at least 2 samples for a covariance, h of shape '
                             f'{tuple(h.shape)} with channel_dim={channel_dim} gives n={n} '
                             '(every axis other than channel_dim counts as samples)')
        zc = z - z.mean(dim=0)
        return zc.T @ zc / (n - 1 if unbiased else n)


def decov_loss(h: torch.Tensor, channel_dim: int = 1, unbiased: bool = False) -> torch.Tensor:
    r""":math:`\mathcal{L}_{DeCov} = \frac{1}{2}(\|C\|_F^2 - \|\mathrm{diag}(C)\|_2^2)`
    of ``h`` (module docstring), a differentiable 0-dim tensor (float32; float64 for
    float64 input)."""
    C = decov_covariance(h, channel_dim, unbiased)
    # The off-diagonal entries masked rather than "||C||^2 - ||diag C||^2": the variances
    # can be far larger than the covariances and the subtraction would swamp them.
    eye = torch.eye(C.shape[0], dtype=torch.bool, device=C.device)
    return 0.5 * C.masked_fill(eye, 0).square().sum()
