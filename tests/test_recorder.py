"""LayerRecorder: sslreg's one way of recording a layer's (input, output) (pure torch)."""
import pytest
import torch
from torch import nn

from sslreg.regularizers import LayerRecorder, Record, RhoSIM, collecting


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv2d(2, 2, 1) for _ in range(4))
        self.calls = []

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            self.calls.append(i)
            x = layer(x)
        return x


class Concat(nn.Module):
    """Called with a list of maps, as DenseNet's dense layers are."""

    def forward(self, maps, scale=1.0):
        return torch.cat(maps, 1) * scale


def test_records_only_inside_the_context_and_cleans_up():
    model, x = Chain(), torch.randn(1, 2, 3, 3)
    recorder = LayerRecorder('layers.*')
    assert recorder.attach(model) == [f'layers.{i}' for i in range(4)]
    model(x)
    assert all(not r for r in recorder.records.values())  # not recording
    with recorder:
        y = model(x)
        model(x)
    assert len(recorder.records['layers.3']) == 2
    z_in, z_out = recorder.last('layers.0')
    assert torch.equal(z_in, x) and torch.equal(recorder.outputs('layers.3')[0], y)
    assert isinstance(recorder.last('layers.1'), Record)
    model(x)
    assert len(recorder.records['layers.3']) == 2  # closed: nothing more
    recorder.detach()
    assert all(not layer._forward_hooks for layer in model.layers)


def test_stop_after_ends_the_forward_and_is_caught_by_its_own_context():
    model, x = Chain(), torch.randn(1, 2, 3, 3)
    recorder = LayerRecorder(['layers.0', 'layers.1'])
    recorder.attach(model)
    after = []
    with recorder.recording(stop_after='layers.1') as records:
        model(x)
        after.append('ran')  # skipped: the forward ended after layers.1
    assert model.calls == [0, 1] and not after
    assert len(records['layers.1']) == 1 and not recorder.active
    # another recorder's stop passes through this one's context
    inner = LayerRecorder('layers.0')
    inner.attach(model)
    model.calls.clear()
    with recorder.recording(stop_after='layers.1'):
        with inner:
            model(x)
    assert model.calls == [0, 1] and len(inner.records['layers.0']) == 1
    assert not inner.active
    with pytest.raises(ValueError, match='stop_after'):
        with recorder.recording(stop_after='layers.3'):
            pass


def test_a_list_input_is_its_channel_concatenation_and_input_index_picks_the_argument():
    block = Concat()
    a, b = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    holder = nn.Sequential(block)
    recorder = LayerRecorder('0')
    recorder.attach(holder)
    with recorder:
        block([a, b])
    assert torch.equal(recorder.last('0').input, torch.cat([a, b], 1))
    second = LayerRecorder('0', input_index=1, owner='Mine')
    second.attach(holder)
    with second:
        block([a], 2.0)
    with pytest.raises(ValueError, match=r"Mine: layer '0' .* input_index=1"):
        second.last('0').input  # a float, not a tensor: read lazily, raised when asked


def test_on_record_can_replace_the_output_and_keep_false_holds_nothing():
    model, x = Chain(), torch.randn(1, 2, 3, 3)
    seen = []

    def zero(record):
        seen.append(record.name)
        return torch.zeros_like(record.output)

    recorder = LayerRecorder('layers.3', keep=False, on_record=zero)
    recorder.attach(model)
    with recorder:
        y = model(x)
    assert seen == ['layers.3'] and torch.equal(y, torch.zeros_like(y))
    assert recorder.records == {'layers.3': []}
    assert not torch.equal(model(x), torch.zeros_like(y))  # outside: untouched


def test_regularizer_taps_are_recorders_switched_on_by_collecting():
    model = Chain().train()
    reg = RhoSIM(layers='layers.*', rho=0.5, dim=2)
    for name in reg.attach(model):
        reg.add_block(name.replace('.', '__'), 2, 2)
    assert isinstance(reg.recorder, LayerRecorder) and reg.recorder.names == reg.layer_names
    x = torch.randn(2, 2, 4, 4)
    model(x)
    assert not reg.pop_terms()
    with collecting([reg]):
        model(x)
    assert not reg.recorder.active
    assert set(reg.pop_terms()) == {'loss'}
    reg.detach()
    assert reg.recorder is None and all(not m._forward_hooks for m in model.layers)
