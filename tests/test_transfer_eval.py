"""VCReg's transfer protocol (Table 1, App. C.1; sslreg/evaluation/transfer.py +
tools/transfer_eval.py): the logistic-regression probe equals scikit-learn's on the same
features and lambda, lambda is picked on validation data only, and the tool prints a
Table 1 row for a tiny checkpoint on the digits."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import ROOT
from sslreg.evaluation.linear_probe import per_class_count
from sslreg.evaluation.transfer import (fit_logistic_regression, holdout_split, lambda_grid,
                                        logistic_objective, sklearn_C, transfer_probe)

TRANSFER = ROOT / 'configs/eval/transfer'
init_default_scope('mmpretrain')


from conftest import one_thread_per_module  # noqa: E402,F401  (autouse: one thread)


@pytest.fixture(autouse=True)
def _scope(mmpretrain_scope):
    """Every test here builds mmpretrain names (conftest.mmpretrain_scope)."""


@pytest.fixture(scope='module')
def digits():
    """scikit-learn's digits as float64 features (pixels / 16) and labels."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    return torch.from_numpy(x / 16.0), torch.from_numpy(y).long()


@pytest.fixture(scope='module')
def tool():
    spec = importlib.util.spec_from_file_location('transfer_eval',
                                                  ROOT / 'tools/transfer_eval.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------- the probe vs sklearn


@pytest.mark.parametrize('lam', [1e-3, 1e-1, 10.0])
def test_probe_equals_sklearn_logistic_regression(digits, lam):
    """Same features, same lambda, C = 1 / (n lambda): the same classifier. Tolerance: W
    within 1e-4 of max|W| (measured 2.5e-6 at lambda 1e-3, ~1e-14 at 0.1 and 10), biases
    within 1e-3 after removing their class mean (the softmax's shift), objectives within
    1e-10; test predictions, hence accuracy, identical."""
    from sklearn.linear_model import LogisticRegression
    x, y = digits
    xtr, ytr, xte, yte = x[:1000], y[:1000], x[1000:], y[1000:]
    ours = fit_logistic_regression(xtr, ytr, lam, tol=1e-10, max_iter=10000)
    ref = LogisticRegression(C=sklearn_C(lam, 1000), solver='lbfgs', tol=1e-12,
                             max_iter=100000).fit(xtr.numpy(), ytr.numpy())
    assert ours.converged and ours.grad_max < 1e-6  # (stops on ftol before tol at lambda 10)
    w_ref, b_ref = torch.from_numpy(ref.coef_), torch.from_numpy(ref.intercept_)
    assert (ours.weight - w_ref).abs().max() <= 1e-4 * w_ref.abs().max()
    assert torch.allclose(ours.bias - ours.bias.mean(), b_ref - b_ref.mean(), atol=1e-3)
    assert float(logistic_objective(ours.weight, ours.bias, xtr, ytr, lam)) == pytest.approx(
        float(logistic_objective(w_ref, b_ref, xtr, ytr, lam)), abs=1e-10)
    pred = ours.predict(xte)
    assert pred.tolist() == ref.predict(xte.numpy()).tolist()
    assert float((pred == yte).double().mean()) == ref.score(xte.numpy(), yte.numpy())
    # the weights are penalized, the bias is not: sum_c W_c = 0 at the optimum
    assert ours.weight.sum(0).abs().max() < 1e-6


def test_lambda_grid_and_C_mapping():
    grid = lambda_grid()
    assert grid.numel() == 45 and grid.dtype == torch.float64
    assert float(grid[0]) == pytest.approx(1e-5) and float(grid[-1]) == pytest.approx(1e5)
    assert torch.allclose(grid.log10().diff(), torch.full((44,), 10 / 44, dtype=torch.float64))
    assert sklearn_C(1e-3, 500) == pytest.approx(2.0)  # C = 1 / (n lambda)


def test_holdout_split_is_stratified_disjoint_and_seeded():
    labels = torch.arange(5).repeat_interleave(torch.tensor([10, 20, 30, 41, 55]))
    train, val = holdout_split(labels, 0.2, seed=0)
    assert torch.bincount(labels[val]).tolist() == [2, 4, 6, 8, 11]  # round(0.2 n_c)
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(labels.numel()))
    again = holdout_split(labels, 0.2, seed=0)
    assert torch.equal(again[1], val) and not torch.equal(holdout_split(labels, 0.2, 1)[1], val)


# --------------------------------------------------------- lambda is picked on val only


def test_the_sweep_picks_lambda_on_validation_data_only(digits):
    x, y = digits
    xtr, ytr, xva, yva, xte, yte = x[:600], y[:600], x[600:900], y[600:900], x[900:], y[900:]
    grid = lambda_grid(num=11).tolist()  # 1e-5 ... 1e5 in decades: the property, quickly
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(yte.numel(), generator=gen)
    base = transfer_probe(xtr, ytr, xva, yva, xte, yte, lambdas=grid)
    shuffled = transfer_probe(xtr, ytr, xva, yva, xte, yte[perm], lambdas=grid)
    noise = transfer_probe(xtr, ytr, xva, yva, torch.randn(xte.shape, generator=gen,
                                                           dtype=torch.float64), yte,
                           lambdas=grid)
    # test labels permuted or test features replaced: the same lambda, the same val curve
    assert base['lambda'] == shuffled['lambda'] == noise['lambda']
    assert base['val_top1'] == shuffled['val_top1'] == noise['val_top1']
    assert shuffled['top1'] < base['top1'] - 50  # ... while the test score is what moved
    # the choice is the val curve's best (ties: the largest lambda), and val decides it
    best = max(base['val_top1'])
    assert base['lambda'] == max(l for l, a in zip(grid, base['val_top1']) if a == best)
    assert 1e-5 < base['lambda'] < 1e5 and base['top1'] > 90
    assert base['num_fit'] == 900 and base['sklearn_C'] == pytest.approx(
        1 / (900 * base['lambda']))
    val_perm = torch.randperm(yva.numel(), generator=gen)
    moved = transfer_probe(xtr, ytr, xva, yva[val_perm], xte, yte, lambdas=grid)
    assert moved['val_top1'] != base['val_top1']


# ------------------------------------------------------------------------- configs, tool


def test_protocol_configs_resolve(tool):
    names = {p.stem for p in TRANSFER.glob('*.py')}
    assert set(tool.TABLE1) <= names
    types = {}
    for name in tool.TABLE1:
        protocol, data = tool.load(tool.resolve(name))
        assert protocol['name'] == f'transfer_{name}' and protocol['paper']
        if name in ('places205', 'inat18'):  # Zbontar et al.'s SGD linear protocol
            assert data is None and protocol['mode'] == 'frozen'
            real = Config.fromfile(str(TRANSFER / f'{name}.py')).linear_eval
            types[name] = real.train.type
            assert (protocol['lr'], protocol['weight_decay'], protocol['momentum'],
                    protocol['nesterov']) == (0.01, 5e-4, 0.9, True)
            assert (protocol['epochs'], tuple(protocol['lr_steps'])) == {  # VISSL's
                'places205': (14, (4, 8, 12)), 'inat18': (84, (24, 48, 72))}[name]
        else:
            assert protocol['lambdas'] == dict(low=1e-5, high=1e5, num=45)
            assert (data['size'], data['resize_short'], data['interpolation']) == (
                224, 224, 'bicubic')
            assert data['train']['data_root'].startswith('data/') and 'digits' not in str(data)
            types[name] = data['train']['type']
            assert data['val'] is None or data['val']['split'] == 'val'
    assert types == dict(food101='Food101', stanford_cars='StanfordCars',
                         fgvc_aircraft='FGVCAircraft', oxford_pets='OxfordIIITPet',
                         flowers102='Flowers102', dtd='DTD', places205='Places205',
                         inat18='CustomDataset')
    # each digits twin is its real protocol on other data
    for twin in ('food101', 'places205'):
        real, _ = tool.load(tool.resolve(twin))
        digit, _ = tool.load(tool.resolve(f'{twin}_digits'))
        drop = ('name', 'dataset')
        assert {k: v for k, v in real.items() if k not in drop} == {
            k: v for k, v in digit.items() if k not in drop}
    with pytest.raises(SystemExit, match='unknown protocol keys'):
        tool.load(tool.resolve('dtd'), {'protocol.lamdbas': 3})


def _tiny_checkpoint(tmp_path):
    """A narrow ResNet-18 classifier config and an MMEngine-format checkpoint of it."""
    from mmengine.registry import MODELS
    config = tmp_path / 'tiny_r18.py'
    config.write_text(
        "default_scope = 'mmpretrain'\n"
        "model = dict(type='ImageClassifier',\n"
        "    data_preprocessor=dict(type='ClsDataPreprocessor', mean=[123.675, 116.28, 103.53],\n"
        "                           std=[58.395, 57.12, 57.375], to_rgb=True),\n"
        "    backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8),\n"
        "    neck=dict(type='GlobalAveragePooling'),\n"
        "    head=dict(type='LinearClsHead', num_classes=10, in_channels=64))\n")
    torch.manual_seed(1)
    model = MODELS.build(Config.fromfile(str(config)).model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), tmp_path / 'ckpt.pth')
    return str(config), str(tmp_path / 'ckpt.pth')


def test_tool_prints_a_table_row_on_the_digits(tool, small_data, tmp_path, monkeypatch,
                                               capsys):
    monkeypatch.chdir(ROOT)
    config, ckpt = _tiny_checkpoint(tmp_path)
    out = tool.main([config, ckpt, '--datasets', 'food101_digits', 'places205_digits',
                     '--label', 'tiny r18', '--work-dir', str(tmp_path), '--device', 'cpu',
                     '--protocol-options', 'linear_eval.train.indices=300',
                     'linear_eval.val.indices=100'])
    printed = capsys.readouterr().out
    header, rule, row = out['row'].splitlines()
    assert header == ('| checkpoint | digits (ImageNet-style folder) | '
                      'digits (ImageNet-style folder) |')
    assert row.startswith('| tiny r18 | ') and len(row.split('|')) == 5
    assert out['row'] in printed
    logreg, linear = out['results']
    assert row == f"| tiny r18 | {logreg['top1']:.2f} | {linear['top1']:.2f} |"
    # 20% of each class of the 1200 training images held out for lambda; all of val = test
    labels = tool.le.dataset_labels(tool.le.build_eval_dataset(
        dict(type='ImageNet', data_root='data/small/digits_imagenet/', split='train'), 32))
    held_out = sum(per_class_count(int(n), 0.2) for n in torch.bincount(labels))
    assert (logreg['num_train'], logreg['num_val'], logreg['num_test']) == (
        1200 - held_out, held_out, 597)
    assert 'of each class of the training split, seed 0' in logreg['val_source']
    assert logreg['lambda'] in lambda_grid().tolist() and len(logreg['val_top1']) == 45
    assert logreg['feature_dim'] == 64 and logreg['interpolation'] == 'bicubic'
    assert linear['mode'] == 'frozen' and linear['num_labelled'] == 300
    assert (linear['lr_steps'], linear['nesterov'], linear['epochs']) == ([4, 8, 12], True, 14)
    saved = json.loads((tmp_path / 'transfer_eval_tiny_r18.json').read_text())
    assert saved['row'] == out['row'] and set(saved['datasets']) == {'food101_digits',
                                                                     'places205_digits'}
    assert saved['datasets']['food101_digits']['top1'] == logreg['top1']
    assert np.isfinite(logreg['top1']) and logreg['top1'] > 10  # above chance on digits


def test_step_schedule_of_the_linear_protocols():
    from sslreg.evaluation.linear_probe import _lr_at
    steps = [40, 80, 120]  # epochs 4 / 8 / 12 at 10 iterations an epoch
    assert [_lr_at(0.01, s, 140, milestones=steps) for s in (0, 39, 40, 79, 80, 120, 139)] == (
        pytest.approx([0.01, 0.01, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5]))
    assert _lr_at(0.01, 70, 140) == pytest.approx(0.005)  # no milestones: the cosine


def test_inat18_lists_are_what_custom_dataset_reads(tmp_path):
    """tools/data/inat18_lists.py: the JSON's images with their category ids, one line each,
    read back by mmpretrain's CustomDataset (no image is opened)."""
    from mmengine.registry import DATASETS
    spec = importlib.util.spec_from_file_location('inat18_lists',
                                                  ROOT / 'tools/data/inat18_lists.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for split, cats in (('train', [5, 0, 8141]), ('val', [3, 3])):
        images = [dict(id=10 + i, file_name=f'train_val2018/Plantae/{c}/{i}.jpg')
                  for i, c in enumerate(cats)]
        annotations = [dict(id=i, image_id=10 + i, category_id=c) for i, c in enumerate(cats)]
        (tmp_path / f'{split}2018.json').write_text(json.dumps(dict(
            images=images, annotations=annotations[::-1], categories=[])))
    module.main([str(tmp_path)])
    assert (tmp_path / 'meta/train.txt').read_text().splitlines() == [
        'train_val2018/Plantae/5/0.jpg 5', 'train_val2018/Plantae/0/1.jpg 0',
        'train_val2018/Plantae/8141/2.jpg 8141']
    data = Config.fromfile(str(TRANSFER / 'inat18.py')).linear_eval.train.to_dict()
    dataset = DATASETS.build(dict(data, data_root=str(tmp_path), lazy_init=False))
    assert np.asarray(dataset.get_gt_labels()).tolist() == [5, 0, 8141]
    assert dataset.get_data_info(2)['img_path'].endswith('train_val2018/Plantae/8141/2.jpg')


def test_images_are_resized_bicubic_then_centre_cropped(tool, small_data):
    dataset = tool.le.build_eval_dataset(dict(type='ImageNet', data_root=str(
        small_data / 'digits_imagenet'), split='val', indices=2), 24, 28, 'bicubic')
    resize = [t for t in dataset.pipeline.transforms if type(t).__name__ == 'ResizeEdge']
    assert [(t.scale, t.edge, t.interpolation) for t in resize] == [(28, 'short', 'bicubic')]
    assert tool.le.stacked(tool.le.image_batches(dataset), 24)[0].shape == (2, 3, 24, 24)
