"""The regularizer core on toy models: taps, ρSIM/SIM, VCReg, composition, gating."""
import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from sslreg.regularizers import RhoSIM, VCReg, collecting, pop_terms, resolve_layers
from sslreg.losses import vcreg_loss


class Toy(BaseModel):
    """backbone: stem conv + 3 blocks (one strided), then a linear head."""

    def __init__(self, calls=1):
        super().__init__()
        self.calls = calls
        self.backbone = nn.Module()
        self.backbone.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.backbone.layers = nn.Sequential(
            nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.Tanh()))
        self.head = nn.Linear(6, 3)

    def extract_feat(self, x):
        return self.backbone.layers(self.backbone.stem(x))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = [self.extract_feat(inputs) for _ in range(self.calls)]  # SSL: one call per view
        out = self.head(feats[-1].mean((2, 3)))
        if mode == 'loss':
            return dict(loss=out.square().mean())
        return out


def wrap(regularizers, calls=1, dtype=torch.float64):
    torch.manual_seed(0)
    model = MODELS.build(dict(type='RegularizedModel', architecture=Toy(calls),
                              regularizers=regularizers, probe_input=(1, 3, 8, 8)))
    return model.to(dtype)


# ------------------------------------------------------------------------------ taps
def test_glob_stays_within_a_path_component():
    model = Toy()
    assert resolve_layers(model, 'backbone.layers.*') == [
        'backbone.layers.0', 'backbone.layers.1', 'backbone.layers.2']
    assert 'backbone.layers.0.0' in resolve_layers(model, 'backbone.**')
    assert resolve_layers(model, ['backbone.layers.1', 'backbone.layers.?']) == [
        'backbone.layers.0', 'backbone.layers.1', 'backbone.layers.2']


def test_pattern_matching_nothing_lists_real_names():
    with pytest.raises(ValueError) as err:
        resolve_layers(Toy(), 'backbone.layer.*')
    msg = str(err.value)
    assert "'backbone.layer.*' matches no module" in msg
    assert 'backbone.layers' in msg and 'backbone.stem' in msg


def test_wrapper_reports_bad_pattern_at_build_time():
    with pytest.raises(ValueError, match='backbone.layers'):
        wrap(dict(v=dict(type='VCReg', layers='backbone.blocks.*')))


# ------------------------------------------------------------------------------ ρSIM
def _standardize_np(z, eps):
    mean = z.mean(axis=1, keepdims=True)
    var = ((z - mean) ** 2).mean(axis=1, keepdims=True)
    return (z - mean) / np.sqrt(var + eps)


def test_rho_sim_matches_hand_computation_on_a_strided_block():
    model = wrap(dict(sim=dict(type='RhoSIM', layers='backbone.layers.1', rho=0.5, dim=5,
                               hidden=7, loss_weight=0.3)))
    reg = model.regularizers.sim
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    seen = {}
    block = model.architecture.backbone.layers[1]
    handle = block.register_forward_hook(lambda m, a, o: seen.update(zin=a[0], zout=o))
    torch.manual_seed(123)
    loss = model(x, mode='loss')['loss_sim']
    handle.remove()
    torch.manual_seed(123)  # the same positions: one permutation of the 16 output tokens
    idx = torch.randperm(16)[:8].numpy()

    zin = seen['zin'].detach().numpy()   # (2, 4, 8, 8) -> output grid 4x4: 2x2 means
    zin = zin.reshape(2, 4, 4, 2, 4, 2).mean(axis=(3, 5)).reshape(2, 4, 16).transpose(0, 2, 1)
    zout = seen['zout'].detach().numpy().reshape(2, 6, 16).transpose(0, 2, 1)

    def mlp(seq, v):
        for layer in seq:
            if isinstance(layer, nn.Linear):
                v = v @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
            else:
                v = np.maximum(v, 0)
        return v

    head = reg.heads['backbone__layers__1']  # preset 'paper': separate H1, H2; G after N
    t = _standardize_np(mlp(head.target_proj, zin[:, idx]), 1e-5)
    p = mlp([head.predictor], _standardize_np(mlp(head.output_proj, zout[:, idx]), 1e-5))
    expected = 0.3 * ((p - t) ** 2).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_rho_sim_sums_blocks_and_calls_and_reaches_all_parameters():
    # dim=4: at the toy's 3-6 channels 'sqrt' gives K=1-2, where a dead ReLU can zero a
    # head's gradient for a whole batch (at real widths K >= 8)
    model = wrap(dict(sim=dict(type='RhoSIM', layers='backbone.layers.*', rho=1.0, dim=4,
                               loss_weight=1.0)), calls=2)
    reg = model.regularizers.sim
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    recorded = []
    orig = reg.block_loss
    reg.block_loss = lambda *a: recorded.append(orig(*a)) or recorded[-1]
    losses = model(x, mode='loss')
    assert len(recorded) == 3 * 2  # 3 blocks x 2 calls
    assert losses['loss_sim'].item() == pytest.approx(sum(r.item() for r in recorded))
    losses['loss_sim'].backward()
    for name, p in reg.named_parameters():
        if name.split('.')[2] == 'target_proj':  # H1: a fixed random projection
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    blocks = model.architecture.backbone.layers
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blocks.parameters())
    # The target side is stopped: the stem only gets gradient through the blocks' outputs,
    # and block 0's input (the stem output) is a target of block 0 only.


def test_rho_sim_validates_rho():
    for rho in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r'\(0, 1\]'):
            RhoSIM(layers='x', rho=rho)


def test_full_sim_decoders_match_widths():
    model = wrap(dict(sim=dict(type='SIM', layers='backbone.layers.*')))
    dec = model.regularizers.sim.decoders
    assert dec['backbone__layers__1'].weight.shape == (4, 6)  # 6 out channels -> 4 in
    loss = model(torch.randn(2, 3, 8, 8, dtype=torch.float64), mode='loss')['loss_sim']
    loss.backward()
    assert dec['backbone__layers__1'].weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ VCReg
def _block_grads(model, x, key_filter=lambda k: 'loss' in k):
    model.zero_grad()
    losses = model(x, mode='loss')
    sum(v for k, v in losses.items() if key_filter(k)).backward()
    return losses, {n: p.grad.clone() for n, p in model.architecture.named_parameters()}


def test_vcreg_fast_equals_explicit_through_the_wrapper():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    layers = 'backbone.layers.*'
    fast = wrap(dict(v=dict(type='VCReg', layers=layers, alpha=0.7, beta=1.3, delta=0.05)))
    explicit = wrap(dict(v=dict(type='VCReg', layers=layers, alpha=0.7, beta=1.3, delta=0.05,
                                mode='explicit')))
    lf, gf = _block_grads(fast, x)
    le, ge = _block_grads(explicit, x)
    assert 'loss_v' not in lf and 'loss_v' in le
    assert lf['v_value'].item() == pytest.approx(le['loss_v'].item(), rel=1e-10)
    for name in gf:
        torch.testing.assert_close(gf[name], ge[name], rtol=1e-7, atol=1e-12)
    # and the regularizer really changed the gradient
    bare = wrap({})
    _, gb = _block_grads(bare, x)
    assert not torch.allclose(gf['backbone.layers.0.0.weight'], gb['backbone.layers.0.0.weight'])


def test_vcreg_explicit_value_is_the_sum_over_blocks():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    model = wrap(dict(v=dict(type='VCReg', layers='backbone.layers.*', mode='explicit',
                             loss_weight=2.0)))
    outs = []
    handles = [b.register_forward_hook(lambda m, a, o: outs.append(o))
               for b in model.architecture.backbone.layers]
    loss = model(x, mode='loss')['loss_v']
    for h in handles:
        h.remove()
    expected = sum(vcreg_loss(o, 2.0, 2.0) for o in outs)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


# ------------------------------------------------------------------------------ composition
def test_rho_sim_and_vcreg_compose_on_the_same_blocks():
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    layers = 'backbone.layers.*'
    sim = dict(type='RhoSIM', layers=layers, rho=1.0, loss_weight=0.1)
    both = wrap(dict(sim=sim, v=dict(type='VCReg', layers=layers)))
    sim_only = wrap(dict(sim=sim))
    v_expl = wrap(dict(v=dict(type='VCReg', layers=layers, mode='explicit')))
    lb, gb = _block_grads(both, x)
    assert {'loss_task', 'loss_sim', 'v_value'} <= set(lb) and 'loss' not in lb
    _, gs = _block_grads(sim_only, x)
    _, gv = _block_grads(v_expl, x)
    _, g0 = _block_grads(wrap({}), x)
    for name in gb:  # the gradients add up: task + ρSIM + VCReg
        torch.testing.assert_close(gb[name], gs[name] + gv[name] - g0[name], rtol=1e-7,
                                   atol=1e-12)


# ------------------------------------------------------------------------------ gating
def test_predict_is_bit_identical_and_records_nothing():
    model = wrap(dict(sim=dict(type='RhoSIM', layers='backbone.layers.*'),
                      v=dict(type='VCReg', layers='backbone.layers.*', mode='explicit')))
    bare = model.architecture
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    for training in (False, True):
        model.train(training)
        assert torch.equal(model(x, mode='tensor'), bare(x, mode='tensor'))
        assert torch.equal(model(x, mode='predict'), bare(x, mode='predict'))
        assert all(not reg._terms for reg in model.regularizers.values())


def test_terms_only_inside_collecting():
    model = Toy().double()
    reg = VCReg(layers='backbone.layers.*', mode='explicit')
    reg.attach(model)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    model(x)
    assert pop_terms({'v': reg}) == {}
    with collecting([reg]):
        model(x)
    terms = pop_terms({'v': reg})
    assert set(terms) == {'loss_v'} and terms['loss_v'] > 0
    reg.detach()
    with collecting([reg]):
        model(x)
    assert pop_terms({'v': reg}) == {}


def test_state_dict_layout_and_strip(tmp_path):
    from tools.strip_regularizers import strip_checkpoint
    model = wrap(dict(sim=dict(type='RhoSIM', layers='backbone.layers.*')))
    keys = list(model.state_dict())
    assert all(k.startswith(('architecture.', 'regularizers.')) for k in keys)
    assert any(k.startswith('regularizers.sim.heads.') for k in keys)
    src, dst = tmp_path / 'reg.pth', tmp_path / 'plain.pth'
    torch.save({'meta': {'epoch': 3}, 'state_dict': model.state_dict(), 'optimizer': {}}, src)
    strip_checkpoint(str(src), str(dst))
    plain = torch.load(dst)
    assert plain['meta'] == {'epoch': 3} and 'optimizer' not in plain
    fresh = Toy().double()
    fresh.load_state_dict(plain['state_dict'], strict=True)
    for (n, p), (_, q) in zip(fresh.state_dict().items(), model.architecture.state_dict().items()):
        assert torch.equal(p, q), n
    with pytest.raises(ValueError, match='differ'):
        strip_checkpoint(str(src), str(src))


def test_logged_loss_is_the_total():
    # MMEngine logs parse_losses' total as 'loss' unless the model's own 'loss' key
    # overwrites it: the wrapper renames the task's loss to loss_task
    model = wrap(dict(sim=dict(type='RhoSIM', layers='backbone.layers.*', loss_weight=1.0)))
    losses = model(torch.randn(2, 3, 8, 8, dtype=torch.float64), mode='loss')
    total, log_vars = model.parse_losses(losses)
    assert float(log_vars['loss']) == pytest.approx(total.item())
    assert total.item() == pytest.approx(losses['loss_task'].item() + losses['loss_sim'].item())


# ------------------------------------------------------------------------------ list inputs
class DenseLayer(nn.Module):
    """As mmpretrain's DenseLayer: called with the list of all earlier maps."""

    def __init__(self, c_in, growth):
        super().__init__()
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1)

    def forward(self, prev):
        return torch.relu(self.conv(torch.cat(prev, 1)))


class DenseToy(BaseModel):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.backbone.block = nn.ModuleList([DenseLayer(4, 3), DenseLayer(7, 3)])

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = [self.backbone.stem(inputs)]
        for layer in self.backbone.block:
            feats.append(layer(feats))
        out = torch.cat(feats, 1).mean()
        return dict(loss=out.square()) if mode == 'loss' else out


def test_a_block_called_with_a_list_reads_its_channel_concatenation():
    """DenseNet's dense layers take the list of earlier maps: the block input ρSIM
    reconstructs is their concatenation, as the layer computes from it. (rho = 1: every
    position, so the loss does not depend on the sampling draw.)"""
    from sslreg.losses.sim import rho_sim_block_loss
    torch.manual_seed(0)
    model = MODELS.build(dict(type='RegularizedModel', architecture=DenseToy(),
                              regularizers=dict(sim=dict(type='RhoSIM', layers='backbone.block.*',
                                                         rho=1.0, dim=4, hidden=5,
                                                         loss_weight=1.0)),
                              probe_input=(1, 3, 6, 6))).double()
    reg = model.regularizers.sim
    key = 'backbone__block__1'
    head = reg.heads[key]
    assert head.target_proj[0].in_features == 7  # 4 stem + 3 from layer 0
    seen, recorded = {}, {}
    layer1 = model.architecture.backbone.block[1]
    handle = layer1.register_forward_hook(lambda m, a, o: seen.update(zin=list(a[0]), zout=o))
    orig = reg.block_loss
    reg.block_loss = lambda name, *a: recorded.setdefault(name, orig(name, *a))
    model(torch.randn(2, 3, 6, 6, dtype=torch.float64), mode='loss')
    handle.remove()
    assert sorted(recorded) == ['backbone.block.0', 'backbone.block.1']
    expected = rho_sim_block_loss(torch.cat(seen['zin'], 1), seen['zout'], head.target,
                                  head.output, head.predictor, 1.0, 1, 'mse', False, reg.eps)
    assert recorded['backbone.block.1'].item() == pytest.approx(expected.item(), rel=1e-12)


def test_a_list_of_maps_that_cannot_be_concatenated_is_a_clear_error():
    reg = RhoSIM(layers='x')
    with pytest.raises(ValueError, match=r"list of tensors of shapes \[\(1, 2, 4, 4\), \(1, 2, 3, 3\)\]"):
        reg._block_input('x', ([torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 3, 3)], ))
