"""``TransferViT``: the encoder of an SSL checkpoint, computing what it was trained to compute.

Transfer configs (frozen-backbone detection, ``configs/det/*vit-s16*``) take two kinds
of ViT checkpoints, which share parameter names but not the function they compute:

* **SER** (``tools/train.py configs/ser/ser-*``: :class:`~sslreg.models.LateClsViT`):
  ``pos_embed`` covers the patches only, ``(1, h*w, C)``; the CLS token joins after
  block ``k`` (``cls_insert_layer``) without a position; there is an ``ln_equiv``.
  mmpretrain's ``VisionTransformer`` cannot even load it (``The length of pos_embed
  (196) doesn't match the expected shape (13*13+1)``), and no weight conversion makes a
  standard ViT compute it (blocks ``1..k`` must not see a CLS token at all).
* **standard** (mmpretrain's MoCo v3 / DINO / supervised ViTs): ``pos_embed`` is
  ``(1, 1 + h*w, C)``, CLS token at the input with its own position.

``TransferViT`` is a ``LateClsViT`` (same arguments, same parameter names) that takes
the layout of whatever it loads, read off the checkpoint's ``pos_embed``:

* patch-only -> LateClsViT's own forward (CLS after block ``cls_insert_layer``);
* with a CLS position -> mmpretrain ``VisionTransformer.forward``, unchanged (its
  ``pos_embed`` parameter then has the ``1 + h*w`` rows of the checkpoint).

Either way the weights are kept exactly as stored (a detector checkpoint's
``backbone.*`` equals the SSL checkpoint's, key for key, bit for bit), and positions
are interpolated per input size from the trained grid (bicubic, as both ViTs do), so
the features are those of the pre-trained model at that input size. Keep ``img_size``
at the checkpoint's: a different one resizes the table once at loading, then again per
image.

What the weights cannot tell -- ``cls_insert_layer`` and ``num_heads`` (MoCo v3's ViT-S
has 12 heads, DINO's and DeiT's 6, same shapes) -- comes from the config. With
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` the checkpoint is
loaded here rather than by MMEngine's ``PretrainedInit``, so that

* the training config MMEngine records in the checkpoint (``meta['cfg']``, read as
  literals, never executed) is compared with this one: a different
  ``cls_insert_layer`` or head count is an error naming the option to set;
* a missing encoder weight is an error (``PretrainedInit`` only warns, and a frozen
  encoder would then keep its random initialisation).

``prefix`` picks the encoder in an SSL checkpoint: ``'backbone.'`` is the online
(MoCo v3, Barlow Twins) / student (DINO) encoder -- what the transfer configs take;
the momentum / teacher copies are ``'momentum_encoder.module.0.'`` (SERMoCoV3,
mmpretrain's MoCoV3) and ``'teacher.module.0.'`` (SERDINO).
"""
import ast
import math
from typing import Optional

import torch
from mmengine.logging import MMLogger
from mmengine.model.weight_init import update_init_info
from mmengine.registry import MODELS
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.models.backbones.vision_transformer import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed

from .late_cls_vit import LateClsViT

__all__ = ['TransferViT', 'recorded_backbone']

# EMA copies of the backbone in SSL algorithms: their recorded config is model.backbone
_EMA_PREFIXES = ('momentum_encoder.module.0.', 'teacher.module.0.', 'target.module.0.')
# recorded backbone types whose arch names num_heads as VisionTransformer's arch_zoo does
_VIT_TYPES = ('VisionTransformer', 'MoCoV3ViT', 'LateClsViT', 'TransferViT')


@MODELS.register_module()
class TransferViT(LateClsViT):
    """A ViT that loads SER (``LateClsViT``) and standard ViT checkpoints alike and
    computes, for each, the function it was pre-trained as (see the module docstring).

    Args:
        cls_insert_layer: ``k`` of SER checkpoints (3 in SER's ViT-S/16 configs);
            unused for standard checkpoints (CLS at the input).
        **kwargs: :class:`~sslreg.models.LateClsViT` arguments (``arch``, ``img_size``
            = the checkpoint's, ``patch_size``, ``out_type='featmap'``, ``init_cfg``).
    """

    def __init__(self, cls_insert_layer: int = 3, **kwargs):
        super().__init__(cls_insert_layer=cls_insert_layer, **kwargs)
        self.loaded_from: Optional[str] = None  # 'ser' / 'vit' once a checkpoint is read

    # ------------------------------------------------------------------ layout

    @property
    def num_patches(self) -> int:
        return self.patch_resolution[0] * self.patch_resolution[1]

    @property
    def cls_at_input(self) -> bool:
        """True in the standard layout (pos_embed with a CLS row, CLS at the input)."""
        return self.pos_embed.shape[1] == self.num_patches + 1

    def _ckpt_has_cls_position(self, n: int, name: str) -> bool:
        if n == self.num_patches:
            return False
        if n == self.num_patches + 1:
            return True
        if math.isqrt(n) ** 2 == n:
            return False
        if math.isqrt(n - 1) ** 2 == n - 1:
            return True
        raise ValueError(f'{name} has {n} positions: neither a square patch grid (SER / '
                         'LateClsViT) nor one CLS position plus a square grid (standard ViT)')

    def _set_pos_rows(self, rows: int) -> None:
        """Give ``pos_embed`` ``rows`` rows (before a load fills them). The Parameter
        object stays the same (only its data is replaced), so whatever already holds it
        -- an optimizer, a DDP wrapper, MMEngine's init bookkeeping -- still does."""
        if self.pos_embed.shape[1] != rows:
            self.pos_embed.data = self.pos_embed.data.new_zeros(1, rows, self.pos_embed.shape[2])

    def _prepare_pos_embed(self, state_dict, prefix, *args, **kwargs):
        name = prefix + 'pos_embed'
        if name not in state_dict:
            return
        ckpt = state_dict[name]
        n = ckpt.shape[1]
        logger = MMLogger.get_current_instance()
        if self._ckpt_has_cls_position(n, name) and self.cls_token is not None:
            self._set_pos_rows(self.num_patches + 1)
            if n != self.num_patches + 1:
                side = math.isqrt(n - 1)
                logger.info(f'Resize the pos_embed shape from {tuple(ckpt.shape)} to '
                            f'{tuple(self.pos_embed.shape)}.')
                ckpt = resize_pos_embed(ckpt, (side, side), self.patch_resolution,
                                        self.interpolate_mode, 1)
                state_dict[name] = ckpt
            if self.loaded_from != 'vit':
                logger.info('TransferViT: pos_embed with a CLS position -> a standard ViT '
                            '(CLS token at the input, mmpretrain VisionTransformer.forward)')
            self.loaded_from = 'vit'
            return
        self._set_pos_rows(self.num_patches)
        super()._prepare_pos_embed(state_dict, prefix, *args, **kwargs)  # resize if needed
        if self.loaded_from != 'ser':
            logger.info('TransferViT: patch-only pos_embed -> SER LateClsViT (CLS token '
                        f'inserted after block {self.cls_insert_layer})')
        self.loaded_from = 'ser'

    # ------------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor):
        if self.cls_at_input:
            return VisionTransformer.forward(self, x)
        return super().forward(x)

    def forward_with_tokens(self, x: torch.Tensor):
        if self.cls_at_input:
            raise RuntimeError('forward_with_tokens needs the SER (patch-only) layout; this '
                               'TransferViT holds a standard ViT checkpoint')
        return super().forward_with_tokens(x)

    # ------------------------------------------------------------------ loading

    def init_weights(self):
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            return super().init_weights()
        self.init_cfg = None  # children and defaults first, as BaseModule does
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfg
        self.load_checkpoint(cfg['checkpoint'], prefix=cfg.get('prefix'),
                             map_location=cfg.get('map_location', 'cpu'))

    def load_checkpoint(self, filename: str, prefix: Optional[str] = None,
                        map_location='cpu') -> None:
        """Load the encoder at ``prefix`` of an MMEngine checkpoint (torch's safe
        loading), check it against the recorded training config, and fail on any
        missing encoder weight."""
        logger = MMLogger.get_current_instance()
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise ValueError(f'{filename}: no weight under prefix {prefix!r}')
        meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
        recorded = recorded_backbone(meta, prefix or '')
        if recorded is not None and 'pos_embed' in state:
            self._check_recorded(recorded, state['pos_embed'].shape[1], filename)
        result = self.load_state_dict(state, strict=False)
        optional = ('ln_equiv.',) if self.cls_at_input else ()  # standard ViTs have none
        missing = [k for k in result.missing_keys if not k.startswith(optional)]
        if missing:
            raise ValueError(f'{filename} (prefix {prefix!r}) lacks encoder weights '
                             f'{missing[:8]}{" ..." if len(missing) > 8 else ""}')
        if result.unexpected_keys:
            logger.warning(f'TransferViT: unused weights in {filename}: '
                           f'{result.unexpected_keys[:8]}')
        logger.info(f'TransferViT: loaded {len(state)} weights from {filename} '
                    f'(prefix {prefix!r}, {self.loaded_from} layout)')
        if hasattr(self, '_params_init_info'):
            update_init_info(self, init_info=f'TransferViT: load from {filename}')

    def _check_recorded(self, recorded: dict, n_pos: int, filename: str) -> None:
        where = 'model.backbone.backbone'  # inside FrozenBackbone, as configs/det write it
        kind = str(recorded.get('type', '')).split('.')[-1]
        if kind not in _VIT_TYPES:
            return
        heads = _num_heads(recorded)
        mine = self.arch_settings['num_heads']
        if heads is not None and heads != mine:
            raise ValueError(
                f'{filename} was trained with {heads} attention heads '
                f"(backbone arch {recorded.get('arch')!r}); this config builds {mine}: set "
                f'{where}.arch.num_heads={heads} (the weights cannot tell them apart)')
        late = not self._ckpt_has_cls_position(n_pos, 'pos_embed')
        if kind in ('LateClsViT', 'TransferViT') and late:
            k = recorded.get('cls_insert_layer', 3)  # LateClsViT's default
            if isinstance(k, int) and k != self.cls_insert_layer:
                raise ValueError(
                    f'{filename} was trained with the CLS token inserted after block {k}; '
                    f'this config inserts it after block {self.cls_insert_layer}: set '
                    f'{where}.cls_insert_layer={k}')


def _num_heads(backbone: dict) -> Optional[int]:
    arch = backbone.get('arch', 'base')
    if isinstance(arch, dict):
        heads = arch.get('num_heads')
        return heads if isinstance(heads, int) else None
    if isinstance(arch, str):
        return LateClsViT.arch_zoo.get(arch.lower(), {}).get('num_heads')
    return None


# ---------------------------------------------------------------------- recorded config

class _Unknown:
    """A config value that is not a plain literal (left unread)."""


def _literal(node):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)
                if isinstance(k, ast.Constant)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == 'dict' and not node.args):
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        return -value if isinstance(value, (int, float)) else _Unknown()
    return _Unknown()


def recorded_backbone(meta: Optional[dict], prefix: str) -> Optional[dict]:
    """The backbone config that trained the weights at ``prefix``, from the training
    config MMEngine stores in ``meta['cfg']`` (parsed as literals, never executed);
    None when there is no such record."""
    text = (meta or {}).get('cfg') if isinstance(meta, dict) else None
    if not isinstance(text, str):
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    model = None
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == 'model'):
            model = _literal(stmt.value)
    if not isinstance(model, dict):
        return None
    if prefix in _EMA_PREFIXES:
        prefix = 'backbone.'
    node = model
    for part in prefix.rstrip('.').split('.') if prefix else []:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get('type') == 'FrozenBackbone':  # a detector's
        node = node.get('backbone')
    if isinstance(node, dict) and isinstance(node.get('type'), str):
        return node
    return None
