"""Runs a researcher can trust (issue #15): a regularizer cannot replace the task loss, a
checkpoint that does not fit is an error, a misspelt top-level config key is warned
about, MCR without its wrapper fails with its own message under torchrun, ρSIM names
the 1x1 blocks it refuses, and the README's config snippet trains."""
import re
import subprocess
import sys
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from conftest import ROOT, free_port, run_tool

pytestmark = pytest.mark.timeout(300)

BASELINE = 'configs/demo/resnet18_digits_cub_baseline.py'
DEMO = 'configs/demo/resnet18_digits_cub_rhosim_vcreg.py'


def tool(*args, env=None, timeout=300):
    """A tools/ entry point as a user runs it: (exit status, output)."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env=dict(__import__('os').environ, OMP_NUM_THREADS='1', **(env or {})))
    return proc.returncode, proc.stdout + proc.stderr


def build_model(path, **model_updates):
    """The model of a config, built as the Runner does (top-level data_preprocessor)."""
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(str(ROOT / path))
    model = cfg.model
    model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model.update(model_updates)
    return MODELS.build(model)


def tiny_classifier():
    return dict(type='ImageClassifier',
                backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8),
                neck=dict(type='GlobalAveragePooling'),
                head=dict(type='LinearClsHead', num_classes=3, in_channels=64,
                          loss=dict(type='CrossEntropyLoss')),
                data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3))


def regularized(**regularizers):
    init_default_scope('mmpretrain')
    return MODELS.build(dict(type='RegularizedModel', architecture=tiny_classifier(),
                             probe_input=(1, 3, 32, 32), regularizers=regularizers))


def batch(n=4):
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i % 3) for i in range(n)]
    return torch.randn(n, 3, 32, 32), samples


# ----------------------------------------------------------------------- 1. loss keys
VCREG = dict(type='VCReg', layers='backbone.layer*.*', mode='explicit')


@pytest.mark.parametrize('name', ['task', 'loss', 'my_loss', ''])
def test_reserved_regularizer_names_are_refused_when_declared(name):
    from sslreg.hooks import RegularizerHook
    with pytest.raises(ValueError, match='rename it in the config') as err:
        regularized(**{name: VCREG})
    assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match='rename it in the config'):
        RegularizerHook(regularizers={name: VCREG})


def test_task_clash_names_both_keys_at_merge():
    """Even past the declaration check (merge_terms used directly), a term keyed
    'loss_task' cannot replace the model's own 'loss', which is renamed to it."""
    from sslreg.regularizers import merge_terms
    with pytest.raises(ValueError, match=r"'loss_task' = the model's own 'loss' \(renamed"):
        merge_terms({'loss': torch.tensor(1.0)}, {'loss_task': torch.tensor(2.0)})
    merged = merge_terms({'loss': torch.tensor(1.0)}, {'loss_sim': torch.tensor(2.0)})
    assert set(merged) == {'loss_task', 'loss_sim'} and float(merged['loss_task']) == 1.0


class DetectorLike(BaseModel):
    """Returns mmdet-style loss keys (loss_cls, loss_bbox)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = self.backbone(inputs)
        return dict(loss_cls=x.pow(2).mean(), loss_bbox=x.abs().mean()) if mode == 'loss' else x


def test_clash_with_the_architectures_loss_cls_is_caught_at_the_first_iteration():
    vcreg = dict(type='VCReg', layers='backbone.*', mode='explicit')
    model = MODELS.build(dict(type='RegularizedModel', architecture=DetectorLike(),
                              regularizers=dict(cls=vcreg))).train()
    with pytest.raises(ValueError, match=r"regularizer key 'loss_cls' = the model's own "
                                         r"'loss_cls'"):
        model(torch.randn(2, 3, 8, 8), mode='loss')
    ok = MODELS.build(dict(type='RegularizedModel', architecture=DetectorLike(),
                           regularizers=dict(vcreg=vcreg))).train()
    assert set(ok(torch.randn(2, 3, 8, 8), mode='loss')) == {'loss_cls', 'loss_bbox', 'loss_vcreg'}


def test_hook_names_clashing_with_the_models_regularizers_are_refused_before_training():
    from sslreg.hooks import RegularizerHook
    model = regularized(vcreg=VCREG)
    hook = RegularizerHook(regularizers=dict(vcreg=dict(type='VCReg', layers='backbone.layer1.*')))
    runner = types.SimpleNamespace(model=model, logger=types.SimpleNamespace(info=print))
    with pytest.raises(ValueError, match=r"\['vcreg'\] are also names of regularizers in the "
                                         'model'):
        hook.before_train(runner)


# ----------------------------------------------------------------------- 2. checkpoints
@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """An unstripped RegularizedModel checkpoint of the demo, its stripped form and a
    foreign model's (SimSiam: same backbone, other neck and head)."""
    from tools.strip_regularizers import strip_checkpoint
    out = tmp_path_factory.mktemp('ckpt')
    paths = dict(reg=out / 'reg.pth', foreign=out / 'foreign.pth', plain=out / 'plain.pth')
    torch.save({'meta': {}, 'state_dict': build_model(DEMO).state_dict()}, paths['reg'])
    torch.save({'meta': {}, 'state_dict': build_model(
        'configs/demo/simsiam_r18_digits.py').state_dict()}, paths['foreign'])
    strip_checkpoint(str(paths['reg']), str(paths['plain']))
    return paths


def test_unstripped_checkpoint_on_a_plain_config_fails_naming_keys_and_strip_tool(
        small_data, checkpoints, tmp_path):
    rc, out = tool('tools/test.py', BASELINE, checkpoints['reg'], '--work-dir', tmp_path)
    assert rc != 0
    assert re.search(r'missing in the checkpoint: 122 keys \(backbone\.\*: 120, head\.\*: 2\): '
                     r'backbone\.conv1\.weight', out), out[-3000:]
    assert re.search(r'unexpected \(not in the model\): \d+ keys \(architecture\.\*: 122, '
                     r'regularizers\.\*: \d+\): architecture\.backbone\.conv1\.weight', out)
    assert f'python tools/strip_regularizers.py {checkpoints["reg"]} ' in out
    assert '--non-strict' in out and 'Epoch(test)' not in out


def test_foreign_checkpoint_fails_naming_keys(small_data, checkpoints, tmp_path):
    rc, out = tool('tools/test.py', BASELINE, checkpoints['foreign'], '--work-dir', tmp_path)
    assert rc != 0
    assert 'missing in the checkpoint: 2 keys (head.*: 2): head.fc.weight, head.fc.bias' in out
    assert re.search(r'unexpected \(not in the model\): 24 keys \(neck\.\*: 16, head\.\*: 8\): '
                     r'neck\.fc0\.weight', out), out[-3000:]
    assert 'strip_regularizers' not in out and 'Epoch(test)' not in out


def test_non_strict_loads_as_before_and_a_fitting_checkpoint_loads_strictly(
        small_data, checkpoints, tmp_path):
    from sslreg.checkpoint_fit import check_checkpoint_fit
    plain = build_model(BASELINE)
    assert check_checkpoint_fit(plain, str(checkpoints['plain'])).ok  # strict, no exit
    with pytest.raises(SystemExit, match='does not fit'):
        check_checkpoint_fit(plain, str(checkpoints['reg']))
    rc, out = tool('tools/test.py', BASELINE, checkpoints['reg'], '--non-strict', '--work-dir',
                   tmp_path, '--cfg-options', 'test_dataloader.dataset.indices=8')
    assert rc == 0, out[-3000:]
    assert '--non-strict: loading the matching keys only' in out
    assert 'missing keys in source state_dict' in out  # MMEngine's own non-strict load
    assert re.search(r'Epoch\(test\) \[1/1\] +accuracy/top1', out)


def test_train_load_from_is_checked_too(small_data, checkpoints, tmp_path, monkeypatch):
    """tools/train.py's main, in this process (its imports are loaded already): the
    foreign load_from stops it before the first iteration."""
    import runpy
    monkeypatch.syspath_prepend(str(ROOT / 'tools'))
    monkeypatch.setattr(sys, 'argv', ['train.py', BASELINE, '--work-dir', str(tmp_path),
                                      '--cfg-options', f'load_from={checkpoints["foreign"]}'])
    with pytest.raises(SystemExit, match='missing in the checkpoint: 2 keys') as err:
        runpy.run_path(str(ROOT / 'tools/train.py'), run_name='__main__')
    assert 'pass --non-strict' in str(err.value)
    assert not list(tmp_path.glob('*.pth'))  # no training happened
    for script in ('tools/train.py', 'tools/test.py'):
        rc, help_text = tool(script, '--help')
        assert rc == 0 and '--non-strict' in help_text


# ----------------------------------------------------------------------- 3. config keys
def test_misspelt_top_level_keys_are_warned_with_the_likely_key(tmp_path, monkeypatch):
    import sslreg.config_check as config_check
    from sslreg.launch import load_config
    logged = []
    monkeypatch.setattr(config_check, 'print_log', lambda msg, **kw: logged.append(msg))
    bad = tmp_path / 'bad.py'
    bad.write_text(f"_base_ = ['{ROOT / BASELINE}']\n"
                   "custom_hook = [dict(type='RegularizerHook')]\n"
                   "model_wraper_cfg = dict(type='MCRDataParallel')\n"
                   "my_own_variable = 3\nconv_cfg = None\nval_evaluator_dice = None\n")
    load_config(str(bad))
    assert len(logged) == 2, logged
    assert "'custom_hook'" in logged[0] and "did you mean 'custom_hooks'?" in logged[0]
    assert "did you mean 'model_wrapper_cfg'?" in logged[1]
    logged.clear()
    load_config(str(ROOT / DEMO))
    assert logged == []
    assert config_check.suspicious_keys(['optim_wraper', 'env_config', 'max_epochs']) == [
        "config key 'optim_wraper' is not read by MMEngine's Runner and is ignored: did you "
        "mean 'optim_wrapper'?",
        "config key 'env_config' is not read by MMEngine's Runner and is ignored: did you "
        "mean 'env_cfg'?"]


# ----------------------------------------------------------------------- 4. MCR wrapper
def test_mcr_train_refuses_several_processes_without_its_wrapper(monkeypatch):
    import sslreg.models.mcr as mcr_module
    from test_mcr import toy_mcr
    model = toy_mcr(0.7, 0.3)
    monkeypatch.setattr(mcr_module, 'get_world_size', lambda: 2)
    with pytest.raises(RuntimeError, match=r"model_wrapper_cfg = dict\(type='MCRDataParallel'\)"):
        model.train()
    model.eval()  # evaluation needs no wrapper
    model._mcr_data_parallel = True  # what MCRDataParallel sets
    model.train()


def test_mcr_without_its_wrapper_under_torchrun_fails_with_our_message(small_data, tmp_path):
    rc, out = tool('-m', 'torch.distributed.run', '--nproc_per_node=2',
                   f'--master_port={free_port()}', 'tools/train.py',
                   'configs/mcr/mcr_simclr_r18_digits.py', '--launcher', 'pytorch',
                   '--work-dir', tmp_path, '--cfg-options', 'model_wrapper_cfg=None',
                   'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=8',
                   'train_dataloader.batch_size=4', 'model.algorithm.backbone.base_channels=8',
                   'model.algorithm.backbone.stem_channels=8',
                   'model.algorithm.neck.in_channels=64', 'model.comp_mod.in_channels=64')
    assert rc != 0
    assert out.count("add model_wrapper_cfg = dict(type='MCRDataParallel')") >= 2, out[-3000:]
    assert 'optim_context should be called' not in out


# ----------------------------------------------------------------------- 5. ρSIM, README
def test_rhosim_refuses_1x1_blocks_at_build_time_naming_them_and_the_fix():
    with pytest.raises(ValueError) as err:
        build_model(DEMO, regularizers=dict(sim=dict(type='RhoSIM', layers='backbone.layer*.*')))
    text = str(err.value)
    assert "'backbone.layer4.0' (1x1), 'backbone.layer4.1' (1x1)" in text
    assert ("layers=['backbone.layer1.0', 'backbone.layer1.1', 'backbone.layer2.0', "
            "'backbone.layer2.1', 'backbone.layer3.0', 'backbone.layer3.1']") in text
    assert 'probe_input=(1, 3, 32, 32)' in text


def test_rhosim_1x1_at_training_names_the_block_and_the_fix():
    """Probed at 64 px (layer4 2x2), trained at 32 px (1x1): the first forward names it."""
    model = build_model(DEMO, probe_input=(1, 3, 64, 64),
                        regularizers=dict(sim=dict(type='RhoSIM', layers='backbone.layer*.*')))
    inputs, samples = batch()
    with pytest.raises(ValueError, match=r"RhoSIM at layer 'backbone\.layer4\.0'.*"
                                         r"e\.g\. layers=\['backbone\.layer1\.0'.*"
                                         r"saw a 2x2 map here: set RegularizedModel\(probe_input"):
        model.train()(inputs, samples, mode='loss')


def readme_snippet() -> str:
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Adding sslreg to a stock config', 1)[1]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_readme_config_snippet_trains_one_iteration(small_data, tmp_path):
    """The snippet as written (its stock base, model, regularizers and hook); only the data
    is swapped for the small digits-CUB at 64 px, where every ResNet-50 block is >= 2x2,
    and no pretrained weights are fetched."""
    snippet = readme_snippet()
    assert "_base_ = ['mmpretrain::resnet/resnet50_8xb8_cub.py']" in snippet
    (tmp_path / 'readme_snippet.py').write_text(snippet)
    (tmp_path / 'small.py').write_text(f"""
_base_ = ['./readme_snippet.py']
pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64)),
            dict(type='PackInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
    data_root='{small_data / 'digits_cub'}', pipeline=pipeline, indices=2,
    metainfo=dict(classes=tuple(f'digit_{{d}}' for d in range(10)))))
data_preprocessor = dict(num_classes=10)
model = dict(architecture=dict(backbone=dict(init_cfg=None), head=dict(num_classes=10)))
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1), checkpoint=None)
""")
    log = run_tool('tools/train.py', tmp_path / 'small.py', '--work-dir', tmp_path / 'wd',
                   '--no-validate', env={'OMP_NUM_THREADS': '1'}, timeout=300)
    record = re.search(r'Epoch\(train\) \[1\]\[1/1\].*', log)
    assert record, log[-3000:]
    assert all(key in record.group(0) for key in ('loss_task', 'loss_sim', 'vcreg_value'))
    # the share logged after iteration 1 (3.5% measured here): a real pull, not 0.03%
    share = re.search(r'gradient share.*?vcreg[^0-9]*([0-9.]+(?:e-?[0-9]+)?)', log)
    assert share and 0.01 < float(share.group(1)) < 10, log[-3000:]


def test_a_shape_the_models_own_load_hook_fixes_is_no_misfit(tmp_path):
    """A ViT's load pre-hook resizes pos_embed to the model's grid: the check runs the
    model's hooks first, so a 32 px checkpoint fits a 64 px model; a wider model does not."""
    from mmpretrain.models import VisionTransformer
    from sslreg.checkpoint_fit import check_checkpoint_fit

    def vit(size, dims=32):
        return VisionTransformer(arch=dict(embed_dims=dims, num_layers=1, num_heads=2,
                                           feedforward_channels=32),
                                 img_size=size, patch_size=8)
    path = tmp_path / 'vit32.pth'
    torch.save({'state_dict': vit(32).state_dict()}, path)  # pos_embed (1, 17, 32)
    model = vit(64)                                            # pos_embed (1, 65, 32)
    assert check_checkpoint_fit(model, str(path)).ok
    with pytest.raises(SystemExit, match='shape mismatch'):
        check_checkpoint_fit(vit(32, dims=48), str(path))
