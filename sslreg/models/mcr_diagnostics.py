r"""MCR's gradient-share diagnostic: how hard its terms pull, relative to the SSL loss.

:func:`measure_gradient_shares` is what :meth:`sslreg.models.mcr.MCR.gradient_shares`
returns and what MCR logs at its first iteration
(:func:`sslreg.models.mcr_optim.log_gradient_shares`); ``tools/analysis/
mcr_gradient_shares.py`` sweeps it over the weights. Kept apart from the algorithm
(:mod:`sslreg.models.mcr`): it reads the model, it is not part of its update.
"""
from typing import Dict, Optional

import torch
from torch import nn

from ..losses.mec import comp_loss, mcr_loss
from .comp_mod import ViewTap
from .mcr_optim import frozen_averaged_models

__all__ = ['measure_gradient_shares']


def measure_gradient_shares(model: nn.Module, inputs, data_samples,
                            progress: Optional[float] = None) -> Dict[str, float]:
    r"""How much the MCR terms pull on the embeddings of ``model`` (an
    :class:`~sslreg.models.mcr.MCR`), relative to the SSL loss.

    With :math:`z` the neck's outputs (every view's embedding):
    ``mcr`` = :math:`\|\nabla_z \lambda_1 \mathcal{L}_{mcr}\| / \|\nabla_z
    \mathcal{L}_{ssl}\|` (both act on :math:`\theta, \phi` through :math:`z`), and
    ``comp`` = :math:`\|\nabla_{\hat Z} \lambda_2 \mathcal{L}_{comp}\| /
    \|\nabla_z \mathcal{L}_{ssl}\|` (Frobenius norms; the fused embedding
    :math:`\hat Z` has the width of :math:`z`). A diagnostic: one extra forward and
    backward; no parameter, buffer (BN statistics) or EMA target is changed.
    ``progress``: MEC's lambda warm-up, as :meth:`MCR.mec_lambda_mu` (L_comp's first-order
    term is constant for unit rows, so its share grows with lambda: 1/8 of it at the
    start of the warm-up).
    """
    algorithm = model.algorithm
    buffers = {n: b.clone() for n, b in algorithm.named_buffers()}
    try:
        with model._tap.recording() as records, frozen_averaged_models(algorithm):
            losses = algorithm(inputs, data_samples, mode='loss')
        l_ssl, _ = algorithm.parse_losses(losses)
        necks = ViewTap.embeddings(records)
        h1, h2, z1, z2 = model._views(records)
        alpha = model.comp_mod.sample_alpha(h1)
        z_hat = model.comp_mod(h1, h2, z1, z2, alpha)
        lam, mu = model.mec_lambda_mu(z_hat, progress)
        l_mcr = model.lambda1 * mcr_loss(z_hat, [z1, z2], lam, mu, model.order)
        z_fused = model.comp_mod(*(t.detach() for t in (h1, h2, z1, z2)), alpha)
        l_comp = model.lambda2 * comp_loss(z_fused, lam, mu, model.order)

        def norm(loss, wrt):
            grads = torch.autograd.grad(loss, wrt, retain_graph=True, allow_unused=True)
            return torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None))

        base = norm(l_ssl, necks)
        return dict(mcr=float(norm(l_mcr, necks) / base),
                    comp=float(norm(l_comp, [z_fused]) / base))
    finally:
        model._tap.clear()
        with torch.no_grad():
            for n, b in algorithm.named_buffers():
                b.copy_(buffers[n])

