"""The network: shapes, padding, freezing, chunking, weight loading, metrics."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from slr.models.encoder import FrameEncoder, WeightsError, load_backbone
from slr.models.metrics import TopKAccuracy
from slr.models.mobilenet_lstm import SignClassifier
from slr.models.module import SignLitModule


def make_net(num_classes: int = 7, **kwargs) -> SignClassifier:
    torch.manual_seed(0)
    return SignClassifier(num_classes, FrameEncoder(weights=None, chunk_frames=4), 16, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize(("b", "t"), [(1, 1), (2, 5), (3, 8)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_shape(b, t, bidirectional):
    net = make_net(bidirectional=bidirectional, lstm_layers=2).eval()
    lengths = torch.randint(1, t + 1, (b,))
    logits = net(torch.randn(b, t, 3, 32, 32), lengths)
    assert logits.shape == (b, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.slow
def test_padding_does_not_change_output():
    net = make_net(bidirectional=True).eval()
    frames, lengths = torch.randn(3, 6, 3, 32, 32), torch.tensor([6, 2, 4])
    noisy = frames.clone()
    noisy[1, 2:] = torch.randn(4, 3, 32, 32) * 5
    noisy[2, 4:] = 100.0
    torch.testing.assert_close(net(noisy, lengths), net(frames, lengths))
    # and the padding really is ignored, not the whole clip: real frames do change the output
    noisy[1, 0] += 1.0
    assert not torch.allclose(net(noisy, lengths)[1], net(frames, lengths)[1])


@pytest.mark.slow
def test_chunked_equals_unchunked():
    encoder = FrameEncoder(weights=None, chunk_frames=0)
    frames, lengths = torch.randn(2, 5, 3, 32, 32), torch.tensor([5, 3])
    whole = encoder(frames, lengths)
    for chunk in (1, 3, 4):
        encoder.chunk_frames = chunk
        torch.testing.assert_close(encoder(frames, lengths), whole)
    assert whole.shape == (2, 5, 1280)
    assert (whole[1, 3:] == 0).all()


@pytest.mark.slow
def test_encoder_is_frozen_through_training_steps():
    net = make_net()
    module = SignLitModule(net, glosses=[f"g{i}" for i in range(7)], optimizer=torch.optim.SGD)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.5)
    encoder_state = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    module.train()
    assert not net.encoder.training, "the frozen encoder must stay in eval mode (BatchNorm)"
    for _ in range(2):
        logits = module(torch.randn(4, 3, 3, 32, 32) * 3 + 1, torch.tensor([3, 2, 3, 1]))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(not p.requires_grad and p.grad is None for p in net.encoder.parameters())
    trained = {n.split(".")[1] for n, p in module.named_parameters() if p.grad is not None}
    assert trained == {"feature_norm", "lstm", "head"}
    for key, value in net.encoder.state_dict().items():  # weights and BN running stats
        torch.testing.assert_close(value, encoder_state[key], rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_unknown_weights_name():
    with pytest.raises(WeightsError, match="IMAGENET1K_V1"):
        load_backbone("IMAGENET_V9")


def test_unavailable_weights_name_torch_home_and_weights_path(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        load_backbone("IMAGENET1K_V1")
    message = str(err.value)
    assert "TORCH_HOME" in message
    assert str(tmp_path) in message
    assert "mobilenet_v2-b0353104.pth" in message
    assert "model.backbone.weights_path" in message


def test_weights_path_loads_and_rejects_garbage(tmp_path):
    reference = mobilenet_v2(weights=None)
    good = tmp_path / "mnv2.pth"
    torch.save(reference.state_dict(), good)
    features = load_backbone(None, str(good))
    torch.testing.assert_close(features.state_dict(), reference.features.state_dict())
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a state dict")
    with pytest.raises(WeightsError, match="garbage.pth"):
        load_backbone(None, str(garbage))
    wrong = tmp_path / "wrong.pth"
    torch.save({"lstm.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match="not a MobileNetV2 state dict"):
        load_backbone(None, str(wrong))


def test_cached_torchvision_weights_work_offline(monkeypatch, tmp_path):
    """A file in TORCH_HOME's cache is used without any download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = MobileNet_V2_Weights.IMAGENET1K_V1
    cache = tmp_path / "hub" / "checkpoints" / spec.url.rsplit("/", 1)[-1]
    cache.parent.mkdir(parents=True)
    reference = mobilenet_v2(weights=None)
    torch.save(reference.state_dict(), cache)
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("downloaded"))
    # check_hash would reject our stand-in file, so read the cache the way torchvision does
    monkeypatch.setattr(
        MobileNet_V2_Weights,
        "get_state_dict",
        lambda self, **kw: torch.hub.load_state_dict_from_url(self.url, check_hash=False),
    )
    features = load_backbone("IMAGENET1K_V1")
    torch.testing.assert_close(features.state_dict(), reference.features.state_dict())


def test_topk_accuracy_per_instance_and_per_class():
    metric = TopKAccuracy(num_classes=4, ks=(1, 2))
    logits = torch.tensor(
        [[9.0, 1, 2, 0], [0, 9, 1, 2], [9, 0, 1, 2], [0, 1, 9, 8.0]]  # class 2 is never a label
    )
    metric.update(logits, torch.tensor([0, 0, 1, 3]))
    out = metric.compute()
    assert out["top1"] == pytest.approx(1 / 4)
    assert out["top1_class"] == pytest.approx((1 / 2 + 0 + 0) / 3)  # classes 0, 1, 3 have videos
    assert out["top2"] == pytest.approx(2 / 4)
    assert out["top2_class"] == pytest.approx((1 / 2 + 0 + 1) / 3)
    assert torch.isnan(metric.per_class(1)[2])


@pytest.mark.slow
def test_training_batch_of_a_single_frame():
    net = make_net().train()
    logits = net(torch.randn(1, 3, 3, 32, 32), torch.tensor([1]))
    assert logits.shape == (1, 7)
    assert net.feature_norm.training
