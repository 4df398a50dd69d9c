"""The keypoint backbone (model/backbone=holistic): MediaPipe Holistic's landmarks as per-frame
features, normalized to the signer; trained, tested and predicted like the CNN's features."""

import builtins
import logging

import numpy as np
import pytest
import torch

from slr.data.video import read_frames
from slr.inference.export import export
from slr.inference.predictor import Predictor
from slr.models import keypoints
from slr.models.checkpoint import load_trained
from slr.models.keypoints import (
    FEATURE_DIM,
    HAND_POINTS,
    KEYPOINTS,
    POSE_POINTS,
    KeypointEncoder,
    keypoint_features,
)
from slr.test import evaluate
from slr.train import train
from tests.helpers import TINY, compose_cfg


def needs_mediapipe():
    pytest.importorskip(
        "mediapipe", reason=f"MediaPipe is not installed (README, Install: {keypoints.INSTALL})"
    )


def landmarks(frames: int = 5, seed: int = 0) -> torch.Tensor:
    """(frames, KEYPOINTS, 3) plausible landmarks: every point found, shoulders apart."""
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(frames, KEYPOINTS, 3, generator=g)
    kp[..., 2] = 1.0
    kp[:, 11, :2] = torch.tensor([0.6, 0.4])  # the shoulders
    kp[:, 12, :2] = torch.tensor([0.4, 0.42])
    return kp


def test_features_do_not_depend_on_where_or_how_large_the_signer_is():
    kp = landmarks()
    moved = kp.clone()
    moved[..., :2] = 0.5 * kp[..., :2] + torch.tensor([0.2, -0.1])  # half the size, elsewhere
    features = keypoint_features(kp)
    assert features.shape == (5, FEATURE_DIM)
    torch.testing.assert_close(keypoint_features(moved), features, rtol=1e-4, atol=1e-4)
    # but they do see the hands move
    raised = kp.clone()
    raised[:, POSE_POINTS:, 1] -= 0.1
    assert not torch.allclose(keypoint_features(raised), features, atol=1e-3)


def test_a_missing_hand_is_zeros_and_its_flag_says_so():
    kp = landmarks()
    kp[2, POSE_POINTS + HAND_POINTS :] = 0  # frame 2: no right hand
    features = keypoint_features(kp)
    right = slice(2 * (POSE_POINTS + HAND_POINTS), 2 * KEYPOINTS)
    right_shape = slice(2 * KEYPOINTS + 2 * HAND_POINTS, 2 * KEYPOINTS + 4 * HAND_POINTS)
    assert features[2, right].abs().sum() == 0 and features[2, right_shape].abs().sum() == 0
    assert features[2, -2:].tolist() == [1.0, 0.0]  # left found, right not
    assert features[1, -2:].tolist() == [1.0, 1.0] and features[1, right].abs().sum() > 0


def test_a_clip_without_visible_shoulders_still_gives_finite_features():
    kp = landmarks()
    kp[:, 11:13, 2] = 0.0  # shoulders not visible in any frame
    assert torch.isfinite(keypoint_features(kp)).all()
    assert torch.isfinite(keypoint_features(torch.zeros(3, KEYPOINTS, 3))).all()


def test_without_mediapipe_the_error_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_mediapipe(name, *args, **kwargs):
        if name == "mediapipe":
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mediapipe)
    with pytest.raises(ImportError, match="mediapipe==0.10.21") as e:
        keypoints.holistic(1)
    assert "--no-deps" in str(e.value)


def test_protobuf_7_is_refused_with_the_fix(monkeypatch):
    needs_mediapipe()
    from google import protobuf

    monkeypatch.setattr(protobuf, "__version__", "7.1.0")
    with pytest.raises(ImportError, match="protobuf 7.1.0"):
        keypoints.holistic(1)


def test_encoder_keeps_padding_zero_and_refuses_float_frames():
    needs_mediapipe()
    frames = torch.zeros(2, 3, 3, 64, 64, dtype=torch.uint8)  # nobody in these frames
    out = KeypointEncoder(threads=2)(frames, torch.tensor([3, 1]))
    assert out.shape == (2, 3, FEATURE_DIM)
    assert out.abs().sum() == 0  # nothing found: zeros, hand flags 0
    with pytest.raises(TypeError, match="uint8"):
        KeypointEncoder()(frames.float(), None)


def test_unused_weights_path_is_said_out_loud(caplog):
    with caplog.at_level(logging.WARNING, logger="slr.models.keypoints"):
        KeypointEncoder(weights_path="mobilenet.pth")
    assert "weights_path=mobilenet.pth is not used" in caplog.text


def test_real_clip_finds_the_signer_and_their_hands(shared_wlasl):
    needs_mediapipe()
    clip = sorted((shared_wlasl / "clips").glob("*.mp4"))[0]
    frames, _ = read_frames(clip)
    picks = np.linspace(0, len(frames) - 1, 12).round().astype(int)
    rgb = np.stack([frames[i].to_ndarray(format="rgb24") for i in picks])  # (12, H, W, 3)
    kp = keypoints.detect(rgb)
    assert kp.shape == (12, KEYPOINTS, 3)
    assert (kp[:, 11:13, 2] > 0.5).all(axis=1).mean() >= 0.8, "shoulders in most frames"
    hands = kp[:, POSE_POINTS:, 2].reshape(12, 2, HAND_POINTS).max(axis=2)  # (12, 2)
    assert hands.any(), f"{clip.name}: no hand found in 12 frames"
    features = keypoint_features(torch.from_numpy(kp))
    body = features[:, : 2 * POSE_POINTS].reshape(12, POSE_POINTS, 2)
    # shoulders one shoulder width apart, about the origin
    assert (body[:, 11] - body[:, 12]).norm(dim=-1).mean() == pytest.approx(1.0, abs=0.2)


def test_recipe_runs_on_keypoints_and_still_takes_the_cnn_weights_override(tmp_path):
    cfg = compose_cfg(
        "train",
        ["experiment=wlasl100", "data.root=x", "model.backbone.weights_path=w.pth"],
        tmp_path,
    )
    assert cfg.model.backbone._target_ == "slr.models.keypoints.KeypointEncoder"
    default = compose_cfg("train", ["data.root=x"], tmp_path)
    assert default.model.backbone._target_ == "slr.models.encoder.FrameEncoder"


@pytest.mark.slow
def test_train_test_predict_on_keypoints(tiny_root, tmp_path):
    needs_mediapipe()
    overrides = ["experiment=demo", f"data.root={tiny_root}", *TINY]
    overrides += ["model/backbone=holistic", "data.features=cached"]
    metrics = train(compose_cfg("train", overrides, tmp_path / "train"))
    for key in ("val/top1", "test/top1", "test/top5"):
        assert metrics[key] is not None, key
    ckpt = metrics["best_ckpt"]
    assert isinstance(load_trained(ckpt).net.encoder, KeypointEncoder)
    test_cfg = ["experiment=demo", f"data.root={tiny_root}", f"ckpt_path={ckpt}", *TINY[2:4]]
    tested = evaluate(compose_cfg("test", test_cfg, tmp_path / "test"))
    assert tested["test/top1"] == pytest.approx(metrics["test/top1"], abs=1e-6)
    video = next((tiny_root / "videos").glob("*.mp4"))
    result = Predictor(ckpt, device="cpu")(video)
    assert sorted(result["glosses"]) == ["grow", "open", "shrink"]
    with pytest.raises(ValueError, match="keypoint"):
        export(ckpt, "torchscript", output=tmp_path / "m.pt")
