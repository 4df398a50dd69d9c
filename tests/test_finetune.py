"""Partial fine-tuning (issue 11, `model.backbone.trainable_blocks`): the last K blocks of the
backbone train, the rest stays frozen; with cached features the store holds the frozen prefix's
maps and training runs only the tail, computing what the live path computes."""

from __future__ import annotations

import pytest
import torch

from slr.data.features import module_digest
from slr.inference.export import ExportableClassifier
from slr.models.checkpoint import load_trained
from slr.models.encoder import FrameEncoder, PrefixEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.models.module import SignLitModule
from slr.train import train
from tests.helpers import TINY, compose_cfg

CLIPS = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
LENGTHS = torch.tensor([3, 2])


def net(blocks: int, **backbone) -> SignClassifier:
    torch.manual_seed(0)
    encoder = FrameEncoder(weights=None, trainable_blocks=blocks, **backbone)
    return SignClassifier(4, encoder, lstm_hidden=8)


def test_only_the_last_blocks_train():
    encoder = net(2).encoder
    grads = [p.requires_grad for p in encoder.backbone.parameters()]
    tuned = [p.requires_grad for p in encoder.backbone[-2:].parameters()]
    assert all(tuned) and sum(grads) == len(tuned)
    assert not any(p.requires_grad for p in net(0).encoder.parameters())
    with pytest.raises(ValueError, match="trainable_blocks=20"):
        FrameEncoder(weights=None, trainable_blocks=20)


@pytest.mark.parametrize("batchnorm", ["eval", "train"])
def test_tuned_batchnorm_mode(batchnorm):
    encoder = net(1, tail_batchnorm=batchnorm).encoder.train()
    assert not encoder.backbone[0].training  # the prefix is frozen whatever .train() says
    assert encoder.backbone[-1][1].training == (batchnorm == "train")
    assert not encoder.eval().backbone[-1][1].training


@pytest.mark.slow
def test_prefix_cached_and_live_logits_agree_within_fp16():
    model = net(2).eval()
    with torch.inference_mode():
        live = model(CLIPS, LENGTHS)
        stored = model.encoder.store_encoder()(CLIPS, LENGTHS).half()  # what the store keeps
        cached = model.classify(model.stored_features(stored.float(), LENGTHS), LENGTHS)
    assert stored.shape[:2] == (2, 3) and stored[1, 2:].abs().sum() == 0  # padding stays zeros
    torch.testing.assert_close(cached, live, rtol=0, atol=2e-2)
    # the frozen default is unchanged: its store holds the encoder's own 1280 features
    frozen = net(0).encoder
    assert frozen.store_encoder() is frozen


def test_gradients_reach_the_tuned_blocks_only_and_the_store_key_stays():
    model = net(1).train()
    encoder = model.encoder
    key = module_digest(encoder.store_encoder())
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    before = [p.detach().clone() for p in encoder.backbone.parameters()]
    for features in (None, encoder.store_encoder()(CLIPS, LENGTHS)):  # live, then from a store
        if features is None:
            logits = model(CLIPS, LENGTHS)
        else:
            logits = model.classify(model.stored_features(features, LENGTHS), LENGTHS)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
        optimizer.step()
    after = list(encoder.backbone.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
    assert sum(moved) and all(moved[-len(list(encoder.backbone[-1].parameters())) :])
    assert not any(moved[: -len(list(encoder.backbone[-1].parameters()))])
    assert module_digest(encoder.store_encoder()) == key  # the prefix did not move
    assert isinstance(encoder.store_encoder(), PrefixEncoder)
    assert module_digest(net(1).encoder.store_encoder()) != module_digest(
        net(2).encoder.store_encoder()
    )


def test_the_tuned_blocks_get_their_own_learning_rate():
    model = net(1, tune_lr=1e-5)
    module = SignLitModule(
        model, list("abcd"), optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)
    )
    groups = module.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [1e-3, 1e-5]
    assert {id(p) for p in groups[1]["params"]} == {
        id(p) for p in model.encoder.backbone[-1].parameters()
    }


@pytest.mark.slow
def test_a_tuned_run_saves_its_blocks_and_test_and_export_use_them(tiny_root, tmp_path):
    overrides = ["experiment=demo", f"data.root={tiny_root}", *TINY, "trainer.max_epochs=2"]
    overrides += ["model.backbone.trainable_blocks=1", "model.backbone.tune_lr=0.01"]
    overrides += [f"data.cache_dir={tmp_path / 'features'}"]
    cfg = compose_cfg("train", overrides, tmp_path / "run")
    metrics = train(cfg)
    assert metrics["test/videos"] == 6
    trained = load_trained(metrics["best_ckpt"])
    fresh = FrameEncoder(weights=None)  # the same random init, never tuned
    tuned, frozen = trained.net.encoder.backbone, fresh.backbone
    assert not torch.equal(tuned[-1][0].weight, frozen[-1][0].weight)  # the tuned 1x1 conv
    assert torch.equal(tuned[0][0].weight, frozen[0][0].weight)  # the stem stayed frozen
    clips = torch.randint(0, 256, (1, 4, 3, 32, 32), dtype=torch.uint8)
    with torch.inference_mode():
        exported = ExportableClassifier(trained.net.eval())(clips)
        torch.testing.assert_close(exported, trained.net(clips), atol=1e-4, rtol=0)
