"""The accuracy levers (issue 11), each off by default: temporal heads, spatial grid pooling,
cached-feature augmentation, mixup and balanced sampling."""

from __future__ import annotations

import collections

import pytest
import torch

from slr.data.datamodule import balanced_sampler
from slr.data.feature_augment import FeatureAugment
from slr.data.features import module_digest
from slr.inference.export import ExportableClassifier, export, load_exported
from slr.models.checkpoint import load_checkpoint
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.models.module import SignLitModule
from tests.helpers import save_random_checkpoint

HEADS = [
    {"rnn": "gru"},
    {"pooling": "mean"},
    {"pooling": "attention", "bidirectional": True},
    {"rnn": "gru", "pooling": "attention", "input_proj": 8, "proj_dropout": 0.5},
    {"pooling": "attention", "center_clip": True},
]


def head(**kwargs) -> SignClassifier:
    torch.manual_seed(0)
    return SignClassifier(7, FrameEncoder(weights=None), 16, **kwargs)


@pytest.mark.parametrize("options", HEADS)
def test_heads_ignore_padding_and_learn(options):
    net = head(**options).eval()
    features, lengths = torch.randn(3, 6, 1280), torch.tensor([6, 2, 4])
    noisy = features.clone()
    noisy[1, 2:], noisy[2, 4:] = 50.0, -3.0
    torch.testing.assert_close(net.classify(noisy, lengths), net.classify(features, lengths))
    noisy[1, 1] += 1.0  # a real frame does count
    assert not torch.allclose(net.classify(noisy, lengths)[1], net.classify(features, lengths)[1])
    # all frames real: the unpacked path (export's) equals the packed one
    full = torch.full((3,), 6)
    torch.testing.assert_close(net.classify(features), net.classify(features, full))
    net.train()
    net.classify(features, lengths).sum().backward()
    trained = [n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum()]
    assert any(n.startswith("lstm.") for n in trained)
    if options.get("pooling") == "attention":
        assert any(n.startswith("attention.") for n in trained)


def test_unknown_head_options_are_refused():
    with pytest.raises(ValueError, match="model.rnn"):
        head(rnn="transformer")
    with pytest.raises(ValueError, match="model.pooling"):
        head(pooling="max")


def test_feature_noise_only_in_training():
    net = head(feature_noise=1.0)
    features, lengths = torch.randn(2, 5, 1280), torch.tensor([5, 3])
    net.eval()
    torch.testing.assert_close(net.classify(features, lengths), net.classify(features, lengths))
    net.train()
    torch.manual_seed(1)
    a = net.classify(features, lengths)
    torch.manual_seed(2)
    assert not torch.allclose(a, net.classify(features, lengths))


def test_center_clip_drops_what_every_frame_of_a_clip_shares():
    net = head(pooling="attention", center_clip=True).eval()
    features, lengths = torch.randn(2, 5, 1280), torch.tensor([5, 3])
    shifted = features.clone()
    shifted[0] += torch.randn(1280)  # another signer or background, the same motion
    shifted[1, :3] += torch.randn(1280)
    torch.testing.assert_close(net.classify(shifted, lengths), net.classify(features, lengths))
    plain = head(pooling="attention").eval()
    assert not torch.allclose(plain.classify(shifted, lengths), plain.classify(features, lengths))


@pytest.mark.slow
def test_grid_pooling_keeps_where_in_the_frame():
    grid, flat = FrameEncoder(weights=None, pool_grid=2), FrameEncoder(weights=None)
    assert grid.out_dim == 4 * 1280
    frames, lengths = torch.randint(0, 256, (2, 3, 3, 64, 64)).float(), torch.tensor([3, 2])
    cells = grid(frames, lengths).view(2, 3, 1280, 2, 2)  # channel-major, 2x2 cells
    assert (cells[1, 2:] == 0).all()
    # 64 px frames give a 2x2 map: its four cells average to the global pool
    torch.testing.assert_close(cells.mean(dim=(3, 4)), flat(frames, lengths), atol=1e-4, rtol=1e-4)
    maps = torch.zeros(1, 1280, 7, 7)
    maps[0, :, 0, 0] = 1.0  # activity in the top-left corner only
    pooled = grid.pool(maps).view(1280, 2, 2)
    assert pooled[:, 0, 0].min() > 0 and pooled[:, 1, 1].abs().max() == 0


def test_grid_pooling_gets_its_own_feature_store():
    # the default's key is unchanged (existing stores stay valid); the grid's differs
    plain = FrameEncoder(weights=None)
    assert plain.numerics == "bf16=False"
    assert module_digest(plain) != module_digest(FrameEncoder(weights=None, pool_grid=2))


def test_feature_augment_off_is_identity_and_on_stays_in_the_clip():
    assert not FeatureAugment().active
    features = torch.arange(10.0).repeat_interleave(4).view(10, 4)  # row i holds i
    features[8:] = 0  # 8 real frames
    aug = FeatureAugment(speed=(0.5, 2.0), crop=0.5, frame_dropout=0.3)
    gen = torch.Generator().manual_seed(0)
    lengths = set()
    for _ in range(200):
        out, n = aug(features, 8, gen)
        rows = out[:n, 0]
        assert 1 <= n <= 10 and (out[n:] == 0).all()
        assert rows.min() >= 0 and rows.max() <= 7  # only real frames, never padding
        assert (rows[1:] >= rows[:-1]).all()  # order kept
        assert rows.max() - rows.min() <= 7
        lengths.add(n)
    assert len(lengths) > 3
    out, n = FeatureAugment(speed=(2.0, 2.0))(features, 8, gen)
    assert n == 4 and out[:4, 0].tolist() == [0.0, 2.0, 5.0, 7.0]


def test_feature_augment_refuses_bad_settings():
    with pytest.raises(ValueError, match="aug_speed"):
        FeatureAugment(speed=(1.2, 0.8))
    with pytest.raises(ValueError, match="aug_crop"):
        FeatureAugment(crop=0.0)


def test_balanced_sampler_draws_every_gloss_equally():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    torch.manual_seed(0)
    drawn = collections.Counter(labels[i] for _ in range(30) for i in balanced_sampler(labels))
    total = sum(drawn.values())
    assert all(abs(drawn[g] / total - 1 / 3) < 0.05 for g in range(3))


def test_mixup_mixes_features_and_targets():
    net = head()
    module = SignLitModule(net, [f"g{i}" for i in range(7)], label_smoothing=0.0, mixup_alpha=0.4)
    batch = {
        "features": torch.randn(4, 5, 1280),
        "length": torch.tensor([5, 4, 3, 5]),
        "label": torch.tensor([0, 1, 2, 3]),
        "video_id": ["a", "b", "c", "d"],
    }
    torch.manual_seed(0)
    logits, loss = module.mixup_step(batch)
    assert logits.shape == (4, 7) and torch.isfinite(loss)
    plain = torch.nn.functional.cross_entropy(module.logits(batch), batch["label"])
    assert not torch.isclose(loss, plain)
    loss.backward()


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_export_of_new_heads_matches_pytorch(tmp_path, fmt):
    glosses = [f"g{i}" for i in range(5)]
    ckpt = save_random_checkpoint(
        tmp_path / "m.ckpt",
        glosses,
        lstm_hidden=8,
        backbone={"pool_grid": 2},
        rnn="gru",
        pooling="attention",
        input_proj=8,
        center_clip=True,
    )
    net = load_checkpoint(ckpt).net
    assert net.encoder.pool_grid == 2
    x = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(ExportableClassifier(net).eval()(x), expected, atol=1e-5, rtol=0)
    path = export(ckpt, fmt, tmp_path / f"m.{'onnx' if fmt == 'onnx' else 'pt'}")
    torch.testing.assert_close(load_exported(path, fmt)(x), expected, atol=1e-4, rtol=0)
