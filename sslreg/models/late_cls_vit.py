"""``LateClsViT``: a ViT whose CLS token joins only after block k (SER's backbone).

Soft Equivariance Regularization (Lee et al., ICLR 2026) regularizes the token map
after block ``k`` (``cls_insert_layer``, 3 in the paper for ViT-S/16). For that map to
be a clean lattice on which rotations, flips and rescalings act, blocks ``1..k`` see
only patch tokens: the CLS token is concatenated after block ``k`` (without a
positional embedding, as in the authors' ``vision_transformer.py``), and the
positional embedding covers the patches only. The token map handed to the
regularizer is block ``k``'s output passed through its own LayerNorm (``ln_equiv``,
the authors' ``norm_equiv``).

Everything else is mmpretrain's :class:`~mmpretrain.models.VisionTransformer`
(same arch names, same parameter names), so:

* ``forward(x)`` returns what a ViT returns for ``out_type`` / ``out_indices``
  (``'cls_token'`` for SSL necks, ``'featmap'`` for detection / segmentation
  necks); ``forward_with_tokens(x)`` returns ``(outs, token_map)`` with the
  ``(B, C, h, w)`` map after block ``k`` -- what SER's algorithms call.
* A standard mmpretrain ViT checkpoint loads into it: the CLS entry of a
  ``(1, 1 + h*w, C)`` ``pos_embed`` is dropped, the grid is resized if needed;
  ``ln_equiv`` (absent there) keeps its initialisation. The other way round,
  :func:`to_vit_state_dict` writes the standard layout (a zero CLS position
  prepended, ``ln_equiv`` dropped) -- the shapes then match, but a standard ViT
  inserts the CLS token at the input, so it computes a different function: use
  ``LateClsViT`` itself (e.g. with ``out_type='featmap'`` in a detector) to reuse
  SER weights faithfully -- or :class:`~sslreg.models.transfer_vit.TransferViT`, which
  the detection configs build: it takes SER and standard ViT checkpoints alike and runs
  each as it was trained.

MoCo v3 options of mmpretrain's ``MoCoV3ViT`` are available: ``stop_grad_conv1``
(frozen random patch projection), ``pos_embed_type='sincos'`` (fixed 2-D sin-cos
positions) and ``init_style='mocov3'`` (its linear/qkv initialisation).
"""
import math
from functools import reduce
from operator import mul
from typing import Dict

import torch
from mmengine.logging import MMLogger
from mmengine.model.weight_init import trunc_normal_
from mmengine.registry import MODELS
from mmpretrain.models.backbones.vision_transformer import VisionTransformer
from mmpretrain.models.utils import (build_2d_sincos_position_embedding, build_norm_layer,
                                     resize_pos_embed, to_2tuple)
from torch import nn

__all__ = ['LateClsViT', 'to_vit_state_dict']


@MODELS.register_module()
class LateClsViT(VisionTransformer):
    """mmpretrain's ViT with the CLS token inserted after block ``cls_insert_layer``.

    Args:
        cls_insert_layer: ``k``; blocks ``1..k`` see patch tokens only; 0 inserts it at
            the input (then only the positional embedding differs from a ViT: none
            for the CLS token). The regularized token map is block ``k``'s output.
        pos_embed_type: ``'learnable'`` (truncated-normal init, as ViT) or
            ``'sincos'`` (fixed 2-D sin-cos, as MoCo v3).
        stop_grad_conv1: freeze the patch projection (MoCo v3's trick).
        init_style: ``'vit'`` (mmpretrain's) or ``'mocov3'`` (MoCoV3ViT's: xavier
            linears, qkv split, xavier-uniform patch projection, CLS ~ N(0, 1e-6)).
        **kwargs: :class:`~mmpretrain.models.VisionTransformer` arguments (``arch``
            accepts ``'mocov3-small'`` too: 384 wide, 12 blocks, 12 heads).
    """

    arch_zoo = {
        **VisionTransformer.arch_zoo,
        **dict.fromkeys(['mocov3-s', 'mocov3-small'], {
            'embed_dims': 384, 'num_layers': 12, 'num_heads': 12,
            'feedforward_channels': 1536}),
    }

    def __init__(self, cls_insert_layer: int = 3, pos_embed_type: str = 'learnable',
                 stop_grad_conv1: bool = False, init_style: str = 'vit', **kwargs):
        if kwargs.get('with_cls_token') is False and kwargs.get('out_type') == 'cls_token':
            raise ValueError("with_cls_token=False cannot give out_type='cls_token'")
        super().__init__(**kwargs)
        if not 0 <= cls_insert_layer <= self.num_layers:
            raise ValueError(f'cls_insert_layer must be in [0, {self.num_layers}] (blocks of '
                             f'this ViT), got {cls_insert_layer}')
        if pos_embed_type not in ('learnable', 'sincos'):
            raise ValueError(f"pos_embed_type must be 'learnable' or 'sincos', got "
                             f'{pos_embed_type!r}')
        if init_style not in ('vit', 'mocov3'):
            raise ValueError(f"init_style must be 'vit' or 'mocov3', got {init_style!r}")
        early = [i for i in self.out_indices if i < cls_insert_layer - 1]
        if early and self.out_type == 'cls_token':
            raise ValueError(f'out_indices {early} come before the CLS token exists (it is '
                             f'inserted after block {cls_insert_layer}); use a featmap out_type')
        self.cls_insert_layer = cls_insert_layer
        self.pos_embed_type = pos_embed_type
        self.init_style = init_style
        num_patches = self.patch_resolution[0] * self.patch_resolution[1]
        # Positions for the patches only (the CLS token joins late, unpositioned).
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, self.embed_dims))
        if pos_embed_type == 'sincos':
            self.pos_embed.data.copy_(self._sincos())
            self.pos_embed.requires_grad = False
        norm_cfg = kwargs.get('norm_cfg', dict(type='LN', eps=1e-6))
        self.ln_equiv = build_norm_layer(norm_cfg, self.embed_dims)
        self.stop_grad_conv1 = stop_grad_conv1
        if stop_grad_conv1:
            for p in self.patch_embed.projection.parameters():
                p.requires_grad = False
        if self.frozen_stages > 0:
            self._freeze_stages()

    def _sincos(self) -> torch.Tensor:
        return build_2d_sincos_position_embedding(
            patches_resolution=self.patch_resolution, embed_dims=self.embed_dims,
            cls_token=False)

    # ------------------------------------------------------------------ init / loading

    def init_weights(self):
        super().init_weights()  # mmpretrain: trunc-normal pos_embed unless Pretrained
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            return
        if self.pos_embed_type == 'sincos':
            self.pos_embed.data.copy_(self._sincos())
        if self.init_style == 'mocov3':
            val = math.sqrt(6. / float(3 * reduce(mul, to_2tuple(
                self.patch_embed.projection.kernel_size), 1) + self.embed_dims))
            nn.init.uniform_(self.patch_embed.projection.weight, -val, val)
            nn.init.zeros_(self.patch_embed.projection.bias)
            for name, m in self.named_modules():
                if isinstance(m, nn.Linear):
                    if 'qkv' in name:
                        val = math.sqrt(6. / float(m.weight.shape[0] // 3 + m.weight.shape[1]))
                        nn.init.uniform_(m.weight, -val, val)
                    else:
                        nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            if self.cls_token is not None:
                nn.init.normal_(self.cls_token, std=1e-6)
        elif self.cls_token is not None:
            trunc_normal_(self.cls_token, std=0.02)

    def _prepare_pos_embed(self, state_dict, prefix, *args, **kwargs):
        """Standard-ViT checkpoints: drop the CLS position; resize the patch grid."""
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        ckpt = state_dict[name]
        n_ckpt = ckpt.shape[1]
        side = int(round(math.sqrt(n_ckpt)))
        if side * side != n_ckpt:
            side1 = int(round(math.sqrt(n_ckpt - 1)))
            if side1 * side1 == n_ckpt - 1:
                ckpt = ckpt[:, 1:]  # (1, 1 + h*w, C): a standard ViT's layout
                side = side1
            else:
                raise ValueError(f'{name} of shape {tuple(ckpt.shape)} is neither a square '
                                 'patch grid nor a CLS position plus one')
        if ckpt.shape[1] != self.pos_embed.shape[1]:
            MMLogger.get_current_instance().info(
                f'Resize the pos_embed shape from {tuple(ckpt.shape)} to '
                f'{tuple(self.pos_embed.shape)}.')
            ckpt = resize_pos_embed(ckpt, (side, side), self.patch_resolution,
                                    self.interpolate_mode, 0)
        state_dict[name] = ckpt

    # ------------------------------------------------------------------ forward

    def _format(self, x: torch.Tensor, hw, has_cls: bool):
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            return x[:, 0]
        patch = x[:, 1:] if has_cls else x
        if self.out_type == 'featmap':
            return patch.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2)
        return self.ln2(patch.mean(dim=1))  # avg_featmap

    def _add_cls(self, x: torch.Tensor) -> torch.Tensor:
        if self.cls_token is None:
            return x
        return torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)

    def _forward(self, x: torch.Tensor, with_tokens: bool):
        x, hw = self.patch_embed(x)
        x = x + resize_pos_embed(self.pos_embed, self.patch_resolution, hw,
                                 mode=self.interpolate_mode, num_extra_tokens=0)
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)
        k = self.cls_insert_layer
        tokens = None
        if k == 0:
            if with_tokens:
                tokens = self._token_map(x, hw)
            x = self._add_cls(x)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == k - 1:
                if with_tokens:
                    tokens = self._token_map(x, hw)
                x = self._add_cls(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format(x, hw, has_cls=i >= k - 1 and self.cls_token is not None))
        return tuple(outs), tokens

    def _token_map(self, x: torch.Tensor, hw) -> torch.Tensor:
        t = self.ln_equiv(x)
        return t.reshape(x.shape[0], *hw, -1).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor):
        return self._forward(x, with_tokens=False)[0]

    def forward_with_tokens(self, x: torch.Tensor):
        """``(outs, token_map)``: the usual outputs and the ``(B, C, h, w)`` token map
        after block ``cls_insert_layer`` (LayerNorm ``ln_equiv`` applied)."""
        return self._forward(x, with_tokens=True)

    def _freeze_stages(self):
        super()._freeze_stages()
        if hasattr(self, 'ln_equiv') and self.frozen_stages >= self.cls_insert_layer:
            self.ln_equiv.eval()
            for p in self.ln_equiv.parameters():
                p.requires_grad = False


def to_vit_state_dict(state_dict: Dict[str, torch.Tensor],
                      prefix: str = '') -> Dict[str, torch.Tensor]:
    """A ``LateClsViT`` state dict in mmpretrain ``VisionTransformer``'s layout: a zero
    CLS position prepended to ``pos_embed``, ``ln_equiv`` dropped. Shapes match a
    standard ViT of the same arch (but see the module docstring: the function differs)."""
    out = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            out[key] = value
            continue
        rest = key[len(prefix):]
        if rest.startswith('ln_equiv.'):
            continue
        if rest == 'pos_embed':
            value = torch.cat([value.new_zeros(1, 1, value.shape[-1]), value], dim=1)
        out[key] = value
    return out
