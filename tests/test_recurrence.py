"""The training pass's LSTM (slr.models.recurrence) and the padded RNN path of SignClassifier
compute what nn.LSTM over packed sequences computes: outputs and every gradient."""

import pytest
import torch
from torch import nn

from slr.models import recurrence
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier


def grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("way", ["view", "copy", "packed", "measured"])
@pytest.mark.parametrize("layers", [1, 2])
def test_fused_lstm_equals_nn_lstm_outputs_and_gradients(layers, way, monkeypatch):
    if way == "packed" and "packed" not in recurrence.product_ways():
        pytest.skip("this torch build has no MKL: the view and copy cases cover the others")
    if way != "measured":  # every way of forming the recurrent product, whichever wins here
        monkeypatch.setattr(recurrence, "fastest_product", lambda *args: way)
    torch.manual_seed(0)
    rnn = nn.LSTM(12, 8, num_layers=layers, batch_first=True)
    x = torch.randn(3, 7, 12, requires_grad=True)
    upstream = torch.randn(3, 7, 8)
    assert recurrence.supports(rnn, x)

    expected, _ = rnn(x)
    (expected * upstream).sum().backward()
    want, want_x = grads(rnn), x.grad.clone()
    rnn.zero_grad()
    x.grad = None

    out = recurrence.fused_lstm(rnn, x)
    (out * upstream).sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, want_x, rtol=1e-5, atol=1e-6)
    got = grads(rnn)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_the_recurrent_product_is_chosen_by_its_measured_cost(monkeypatch):
    w_hh = torch.randn(32, 8)  # (4H, H)
    chosen = recurrence.fastest_product(w_hh, 3, 10)
    assert chosen in recurrence.product_ways()
    key = (8, 3, torch.get_num_threads())
    assert recurrence._COSTS[key].keys() == recurrence.product_ways().keys()  # measured once
    costs = {"view": (0.0, 3.0), "copy": (1.0, 2.0), "packed": (5.0, 1.0)}  # set-up, per step
    monkeypatch.setitem(recurrence._COSTS, key, costs)
    monkeypatch.setattr(recurrence, "product_ways", lambda: dict.fromkeys(costs))
    assert [recurrence.fastest_product(w_hh, 3, steps) for steps in (0, 2, 9)] == [
        "view",
        "copy",
        "packed",
    ]


def test_fused_lstm_is_only_taken_where_it_is_the_same_function():
    x = torch.randn(2, 3, 4)
    assert not recurrence.supports(nn.LSTM(4, 5, batch_first=True, bidirectional=True), x)
    assert not recurrence.supports(nn.LSTM(4, 5, batch_first=True, proj_size=2), x)
    assert not recurrence.supports(nn.LSTM(4, 5, batch_first=False), x)
    assert not recurrence.supports(nn.GRU(4, 5, batch_first=True), x)
    assert not recurrence.supports(nn.LSTM(4, 5, batch_first=True), x.double())
    with torch.no_grad():
        assert not recurrence.supports(nn.LSTM(4, 5, batch_first=True), x)


def packed_reference(net: SignClassifier, features, lengths) -> torch.Tensor:
    """The classifier as it was before the padded path: every RNN over packed sequences."""
    out, state = net.packed_rnn(features, lengths)
    if net.pooling == "last":
        h_n = state[0] if isinstance(state, tuple) else state
        summary = torch.cat([h_n[-2], h_n[-1]], 1) if net.lstm.bidirectional else h_n[-1]
    else:
        summary = net.summary(out, state, lengths)
    return net.head(summary)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
@pytest.mark.parametrize("training", [True, False])
def test_padded_rnn_equals_packed_sequences(rnn, pooling, training):
    torch.manual_seed(0)
    backbone = FrameEncoder(weights=None)
    net = SignClassifier(
        5, backbone, lstm_hidden=6, lstm_layers=2, dropout=0.0, rnn=rnn, pooling=pooling
    ).train(training)
    features = torch.randn(3, 6, backbone.out_dim)
    lengths = torch.tensor([6, 2, 4])
    features[1, 2:] = 99.0  # padding: must not reach anything
    features[2, 4:] = -99.0

    expected = packed_reference(net, features, lengths)
    expected.square().sum().backward()
    want = grads(net)
    net.zero_grad()
    got_logits = net.classify(features, lengths)
    got_logits.square().sum().backward()
    torch.testing.assert_close(got_logits, expected, rtol=1e-5, atol=1e-6)
    got = grads(net)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bidirectional_still_reads_packed_sequences():
    torch.manual_seed(0)
    backbone = FrameEncoder(weights=None)
    net = SignClassifier(5, backbone, lstm_hidden=6, bidirectional=True, dropout=0.0).eval()
    features = torch.randn(2, 5, backbone.out_dim)
    lengths = torch.tensor([5, 3])
    short = net.classify(features[1:, :3], lengths[1:])  # the short clip alone, no padding
    torch.testing.assert_close(net.classify(features, lengths)[1:], short, rtol=1e-5, atol=1e-6)


def test_the_step_loops_leave_the_thread_count_as_they_found_it():
    rnn = nn.LSTM(4, 5, batch_first=True)
    threads = torch.get_num_threads()
    recurrence.fused_lstm(rnn, torch.randn(2, 3, 4)).sum().backward()
    assert torch.get_num_threads() == threads

    def failing_step():
        with recurrence.one_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("a failing step")

    with pytest.raises(RuntimeError, match="a failing step"):
        failing_step()
    assert torch.get_num_threads() == threads
