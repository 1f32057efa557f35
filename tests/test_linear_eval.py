"""The label-fraction linear evaluation (tools/linear_eval.py + sslreg.evaluation.linear_probe):
the subset is class-balanced and fixed by the seed, the SGD probe learns, the schedule is a
cosine without warm-up, the backbone is found and loaded inside any wrapper, and the tool
runs frozen and fine-tuned. The papers' protocols (configs/eval/): test_eval_protocols.py."""
import importlib.util
import json

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT
from sslreg.evaluation.linear_probe import label_subset, train_linear_classifier

init_default_scope('mmpretrain')


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


def _tool():
    spec = importlib.util.spec_from_file_location('linear_eval', ROOT / 'tools/linear_eval.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_subset_is_class_balanced_and_fixed_by_the_seed():
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 60, 70, 80, 90, 100, 110, 120,
                                                              130, 140]))
    subset = label_subset(labels, 0.1, seed=0)
    assert torch.equal(subset, label_subset(labels, 0.1, seed=0))
    assert not torch.equal(subset, label_subset(labels, 0.1, seed=1))
    counts = torch.bincount(labels[subset], minlength=10)
    assert counts.tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert torch.all(subset[1:] > subset[:-1])  # sorted, no duplicates
    # every class keeps at least one sample; 100% keeps everything
    assert torch.bincount(labels[label_subset(labels, 0.001)]).tolist() == [1] * 10
    assert torch.equal(label_subset(labels, 1.0), torch.arange(labels.numel()))
    with pytest.raises(ValueError):
        label_subset(labels, 0)


def test_sgd_linear_probe_learns_separable_classes():
    gen = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(5, 16, generator=gen)
    y = torch.arange(5).repeat(40)
    x = centres[y] + torch.randn(200, 16, generator=gen) + 10  # offset: standardization matters
    clf = train_linear_classifier(x[:100], y[:100], 5)  # lr 0.05, 50 epochs, batch 256
    with torch.no_grad():
        acc = (clf(x[100:]).argmax(1) == y[100:]).float().mean()
    assert acc > 0.95
    # the default protocol is the issue's
    import inspect
    params = inspect.signature(train_linear_classifier).parameters
    assert (params['epochs'].default, params['lr'].default, params['momentum'].default,
            params['batch_size'].default) == (50, 0.05, 0.9, 256)


def test_cosine_schedule_starts_at_the_base_rate_without_warmup():
    from sslreg.evaluation.linear_probe import _lr_at
    assert _lr_at(0.05, 0, 100) == 0.05  # no warm-up: the first step runs at the base rate
    assert _lr_at(0.05, 50, 100) == pytest.approx(0.025)
    assert _lr_at(0.05, 100, 100) == pytest.approx(0)
    # with warm-up: linear to the base rate over the warm-up steps, then the cosine
    assert [_lr_at(0.05, s, 100, warmup=10) for s in (0, 9, 10)] == pytest.approx(
        [0.005, 0.05, 0.05])
    assert _lr_at(0.05, 55, 100, warmup=10) == pytest.approx(0.025)


@pytest.mark.parametrize('config,prefix', [
    ('configs/sidae/sidae_r18_digits.py', 'backbone'),
    ('configs/mcr/mcr_simclr_r18_digits.py', 'algorithm.backbone'),
])
def test_backbone_is_found_and_loaded_inside_any_wrapper(config, prefix, tmp_path):
    tool = _tool()
    cfg = Config.fromfile(str(ROOT / config))
    backbone, _, where = tool.build_backbone(cfg, 'none')
    assert where == prefix
    state = {f'{prefix}.{k}': torch.full_like(v, 0.5) if v.is_floating_point() else v
             for k, v in backbone.state_dict().items()}
    state['decoy.weight'] = torch.zeros(1)
    torch.save(dict(state_dict=state, meta=dict()), tmp_path / 'ckpt.pth')
    loaded, _, _ = tool.build_backbone(cfg, str(tmp_path / 'ckpt.pth'))
    assert all(torch.all(v == 0.5) for v in loaded.state_dict().values() if v.is_floating_point())


def test_tool_frozen_and_finetune_on_the_digits(small_data, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    tool = _tool()
    common = ['configs/sidae/sidae_r18_digits.py', 'none', '--work-dir', str(tmp_path),
              '--cfg-options', 'linear_eval.val.indices=64',
              'model.backbone.base_channels=8', 'model.backbone.stem_channels=8',
              'model.neck.in_channels=64']
    frozen = tool.main(common + ['--labels', '1%', '--epochs', '5'])
    assert frozen['num_labelled'] == 10 and frozen['num_val'] == 64
    assert frozen['mode'] == 'frozen' and 0 <= frozen['top1'] <= 100
    saved = json.loads((tmp_path / 'linear_eval_0.01_frozen.json').read_text())
    assert saved['subset'] == frozen['subset']
    again = tool.main(common + ['--labels', '1%', '--epochs', '5'])
    assert again['subset'] == frozen['subset'] and again['top1'] == frozen['top1']
    tuned = tool.main(common + ['--labels', '1%', '--epochs', '2', '--finetune'])
    assert tuned['mode'] == 'finetune' and tuned['subset'] == frozen['subset']
    assert (tmp_path / 'linear_eval_0.01_finetune.json').exists()
