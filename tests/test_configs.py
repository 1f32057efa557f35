"""Every shipped config loads, and its model builds; small-data configs build their
datasets too (full-scale configs name real datasets that are not on this machine)."""
import copy
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS, init_default_scope

ROOT = Path(__file__).resolve().parents[1]
# configs/eval/ holds evaluation protocols (no model; tests/test_eval_protocols.py loads them)
CONFIGS = sorted(p for p in (ROOT / 'configs').rglob('*.py')
                 if '_base_' not in p.parts and (ROOT / 'configs' / 'eval') not in p.parents)


def _strip_pretrained(node):
    """No weight can be downloaded here: drop Pretrained init_cfgs before building."""
    if isinstance(node, dict):
        if isinstance(node.get('init_cfg'), dict) and node['init_cfg'].get('type') == 'Pretrained':
            node['init_cfg'] = None
        for value in node.values():
            _strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _strip_pretrained(value)


@pytest.mark.parametrize('path', CONFIGS, ids=[str(p.relative_to(ROOT / 'configs'))
                                               for p in CONFIGS])
def test_config_builds(path, small_data, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    # a ConfigDict, as the Runner passes it (mmdet reads train_cfg.rpn as an attribute)
    model_cfg = copy.deepcopy(cfg.model)
    _strip_pretrained(model_cfg)
    if 'data_preprocessor' in cfg and model_cfg.get('type') != 'RegularizedModel':
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
    loader = cfg.get('train_dataloader')
    data_root = str(loader.dataset.get('data_root') or loader.dataset.get('dataset', {}).get(
        'data_root', '')) if loader else ''
    if data_root.startswith('data/small'):
        dataset = DATASETS.build(loader.dataset)
        assert len(dataset) > 0
