"""``RegularizedModel``: any OpenMMLab model plus regularizers on its named layers."""
import copy
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from ..regularizers import collecting, find_regularizers, merge_terms, pop_terms, probing
from ..regularizers.base import check_name, name_regularizers
from ..regularizers.report import grad_share_ready, report_lines


def load_architecture_cfg(architecture: dict, data_preprocessor: Optional[dict]) -> dict:
    """The model dict of ``architecture``: a model dict, or ``dict(cfg_path=...)`` naming
    a config (``'mmpretrain::resnet/resnet50_8xb8_cub.py'`` or a file path); keys next
    to ``cfg_path`` update the loaded model dict."""
    architecture = copy.deepcopy(dict(architecture))
    cfg_path = architecture.pop('cfg_path', None)
    if cfg_path is not None:
        if '::' in cfg_path:
            from mmengine.hub import get_config
            cfg = get_config(cfg_path)
        else:
            cfg = Config.fromfile(cfg_path)
        model = copy.deepcopy(cfg.model)
        model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
        if cfg.get('default_scope'):
            model.setdefault('_scope_', cfg.default_scope)
        model = Config(dict(model=model))
        model.merge_from_dict(dict(model=architecture))
        architecture = model.model.to_dict()
    if data_preprocessor is not None and architecture.get('data_preprocessor') is None:
        # MMEngine's Runner puts a config's top-level data_preprocessor here.
        architecture['data_preprocessor'] = data_preprocessor
    return architecture


@MODELS.register_module()
class RegularizedModel(BaseModel):
    """Wraps a model and adds regularizers on its layers.

    Training (``mode='loss'``) returns the architecture's loss dict plus
    ``loss_<name>`` for each regularizer (and logged-only ``<name>_<stat>`` entries;
    a bare ``loss`` of the architecture becomes ``loss_task``: :func:`merge_terms`);
    every other mode, ``val_step`` and ``test_step`` go to the architecture untouched.
    The state dict is ``architecture.*`` + ``regularizers.*``;
    ``tools/strip_regularizers.py`` writes the plain architecture checkpoint.

    Args:
        architecture: the model dict, or ``dict(cfg_path='mmpretrain::...py', **overrides)``.
        regularizers: name -> regularizer dict (``RhoSIM``, ``SIM``, ``VCReg``); layer
            names are relative to the architecture (``'backbone.layer*.*'``).
        probe_input: shape of the dummy input of the one forward that tells
            parametric regularizers (ρSIM/SIM) their layers' widths at build time.
        data_preprocessor: used only when the architecture has none (MMEngine's Runner
            passes a config's top-level ``data_preprocessor`` here).
    """

    def __init__(self, architecture: dict, regularizers: Optional[Dict[str, dict]] = None,
                 probe_input: Sequence[int] = (1, 3, 224, 224),
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if isinstance(architecture, nn.Module):
            self.architecture = architecture
        else:
            self.architecture = MODELS.build(load_architecture_cfg(architecture, data_preprocessor))
        # One preprocessor, the architecture's: predictions stay bit-identical.
        self.data_preprocessor = self.architecture.data_preprocessor
        self.regularizers = nn.ModuleDict()
        for name, cfg in (regularizers or {}).items():
            check_name(name, 'RegularizedModel: regularizer')
            self.regularizers[name] = cfg if isinstance(cfg, nn.Module) else MODELS.build(cfg)
            self.regularizers[name].attach(self.architecture)
        self._probe(tuple(probe_input))
        # Regularizers living inside the architecture (necks) are collected too.
        self._named = dict(self.regularizers.items())
        self._named.update(name_regularizers(find_regularizers(self.architecture),
                                             taken=self._named))

    @torch.no_grad()
    def _probe(self, shape):
        needing = [reg for reg in self.regularizers.values() if reg.needs_probe]
        if not needing:
            return
        was_training = self.architecture.training
        self.architecture.eval()
        dummy = torch.randn(shape)
        try:
            with probing(needing):
                # extract_feat reaches backbone and neck in all three frameworks and the
                # SSL algorithms; the full tensor forward also reaches the heads.
                if hasattr(self.architecture, 'extract_feat'):
                    self.architecture.extract_feat(dummy)
                if any(n not in reg.probe_shapes for reg in needing for n in reg.layer_names):
                    self.architecture(dummy, mode='tensor')
        finally:
            self.architecture.train(was_training)
        for reg in needing:  # ρSIM: blocks too small to sample (1x1 maps) fail here
            if hasattr(reg, 'check_probe_sizes'):
                reg.check_probe_sizes(shape)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode != 'loss':
            return self.architecture(inputs, data_samples, mode=mode)
        self._report_once()
        with collecting(self._named.values()):
            losses = self.architecture(inputs, data_samples, mode='loss')
        return merge_terms(losses, pop_terms(self._named))

    def _report_once(self):
        """At the first training forward, log the layers of each regularizer held here
        (necks included); at the second, when the first backward has run, their gradient
        shares (:func:`~sslreg.regularizers.report.report_lines`). Once each."""
        stage = getattr(self, '_reported', None)
        if stage == 'grad_share' or not self._named:
            return
        if stage is None:
            logger = MMLogger.get_current_instance()
            for line in report_lines(self._named, 'layers', self.architecture):
                logger.info(line)
            self._reported = 'layers'
        elif grad_share_ready(self._named):
            for line in report_lines(self._named, 'grad_share'):
                print_log(line, logger='current')
            self._reported = 'grad_share'

    def val_step(self, data):
        return self.architecture.val_step(data)

    def test_step(self, data):
        return self.architecture.test_step(data)
