"""Body and hand keypoints per frame from MediaPipe Holistic, as a frozen frame encoder.

Signs are hand shapes and movements; a frozen ImageNet CNN pooled over the whole frame sees
mostly the signer and the room. Holistic's pose and hand landmarks are that information itself,
normalized to the signer's shoulders so that where and how large the signer stands drops out.

MediaPipe 0.10.21 is the last release whose wheel carries the Holistic models (later releases
download them at run time, which an offline machine cannot). Its metadata pins protobuf < 5,
which onnx and tensorboard refuse, but it runs on protobuf 6 (not 7; tests/test_keypoints.py),
so it is installed without its pins: README, "Install".
"""

from __future__ import annotations

import importlib.metadata
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

POSE_POINTS = 25  # MediaPipe pose landmarks 0-24: face, shoulders, elbows, wrists, hands, hips
HAND_POINTS = 21
SHOULDERS = (11, 12)
KEYPOINTS = POSE_POINTS + 2 * HAND_POINTS  # pose, then the left hand, then the right
# body-normalized x, y of every keypoint; each hand's shape about its wrist; hand present flags
FEATURE_DIM = 2 * KEYPOINTS + 2 * 2 * HAND_POINTS + 2
HAND_SHAPE_SCALE = 3.0  # a hand spans ~0.3 shoulder widths: its shape, scaled to the body's range
MEDIAPIPE = "mediapipe==0.10.21"
INSTALL = f'pip install -e ".[keypoints]" && pip install --no-deps "{MEDIAPIPE}"'


def holistic(model_complexity: int):
    """A MediaPipe Holistic tracker for one clip (it follows the signer from frame to frame)."""
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ImportError(
            f"model/backbone=holistic needs MediaPipe ({e}); install it with: {INSTALL}"
        ) from e
    from google import protobuf

    if int(protobuf.__version__.split(".")[0]) >= 7:  # its descriptors lost `label` in 7
        raise ImportError(
            f"MediaPipe 0.10.21 fails on protobuf {protobuf.__version__}: install the one the "
            f"keypoints extra asks for, {INSTALL}"
        )
    solutions = getattr(mp, "solutions", None)
    if solutions is None:
        raise ImportError(
            f"MediaPipe {mp.__version__} has no bundled Holistic model (mp.solutions left the "
            f"wheel in 0.10.30); install the one that has it: {INSTALL}"
        )
    return solutions.holistic.Holistic(static_image_mode=False, model_complexity=model_complexity)


def detect(frames: np.ndarray, model_complexity: int = 1) -> np.ndarray:
    """(n, H, W, 3) uint8 RGB frames of one clip -> (n, KEYPOINTS, 3) landmarks: x, y in [0, 1]
    of the frame, then the pose's visibility or 1 for a found hand; zeros where none was found."""
    kp = np.zeros((len(frames), KEYPOINTS, 3), np.float32)
    with holistic(model_complexity) as tracker:
        for t, frame in enumerate(frames):
            found = tracker.process(np.ascontiguousarray(frame))
            if found.pose_landmarks:
                points = found.pose_landmarks.landmark[:POSE_POINTS]
                kp[t, :POSE_POINTS] = [(p.x, p.y, p.visibility) for p in points]
            hands = (found.left_hand_landmarks, found.right_hand_landmarks)
            for start, hand in zip((POSE_POINTS, POSE_POINTS + HAND_POINTS), hands, strict=True):
                if hand:
                    kp[t, start : start + HAND_POINTS] = [(p.x, p.y, 1.0) for p in hand.landmark]
    return kp


def keypoint_features(kp: torch.Tensor) -> torch.Tensor:
    """(n, KEYPOINTS, 3) landmarks of one clip's frames -> (n, FEATURE_DIM) features.

    Coordinates are taken about the clip's mean shoulder midpoint, in units of its mean shoulder
    width (over the frames where both shoulders are visible; the frame's centre and a third of
    its width otherwise). A missing pose or hand is zeros (a hand's flag says which)."""
    xy, present = kp[..., :2], kp[..., 2]  # (n, K, 2), (n, K)
    left, right = POSE_POINTS, POSE_POINTS + HAND_POINTS
    shoulders = xy[:, list(SHOULDERS)]  # (n, 2, 2)
    seen = (present[:, list(SHOULDERS)] > 0.5).all(dim=1)  # (n,)
    if seen.any():
        center = shoulders[seen].mean(dim=(0, 1))  # (2,)
        width = (shoulders[seen, 0] - shoulders[seen, 1]).norm(dim=-1).mean().clamp(min=1e-3)
    else:
        center, width = xy.new_tensor([0.5, 0.5]), xy.new_tensor(1 / 3)
    body = (xy - center) / width  # (n, K, 2)
    hands = torch.stack([present[:, left] > 0, present[:, right] > 0], dim=1)  # (n, 2)
    mask = torch.ones_like(present, dtype=torch.bool)
    mask[:, :left] = (present[:, :left] > 0).any(dim=1, keepdim=True)  # a frame without a pose
    mask[:, left:right] = hands[:, :1]
    mask[:, right:] = hands[:, 1:]
    body = body * mask[..., None]
    # each hand's shape: its points about its wrist (the hand's point 0)
    shapes = [
        (body[:, s : s + HAND_POINTS] - body[:, s : s + 1]) * HAND_SHAPE_SCALE
        for s in (left, right)
    ]  # 2 x (n, 21, 2)
    n = len(kp)
    parts = [body.reshape(n, -1), *(s.reshape(n, -1) for s in shapes), hands.to(body.dtype)]
    return torch.cat(parts, dim=1)  # (n, FEATURE_DIM)


class KeypointEncoder(nn.Module):
    """(B, T, 3, S, S) uint8 frames and (B,) lengths -> (B, T, FEATURE_DIM) keypoint features;
    zeros at padded frames. Nothing in it trains.

    Args:
        model_complexity: Holistic's pose model, 0 (lite), 1 (full) or 2 (heavy).
        threads: clips of a batch tracked at once (MediaPipe releases the GIL while it runs).
        weights, weights_path: not used (there is no CNN to load). Accepted, with a warning
            when set, so that commands and experiment files written for the MobileNetV2
            backbone (`model.backbone.weights_path=...`, the demo's `weights: null`) run
            unchanged with keypoints.
    """

    def __init__(
        self,
        model_complexity: int = 1,
        threads: int = 2,
        weights: str | None = None,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        for key, value in (("weights", weights), ("weights_path", weights_path)):
            if value is not None:
                log.warning(
                    "model.backbone.%s=%s is not used: the keypoint backbone (holistic) has no "
                    "CNN weights; MediaPipe's own models come with its wheel",
                    key,
                    value,
                )
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"keypoint model_complexity={model_complexity}: use 0, 1 or 2")
        if threads < 1:
            raise ValueError(f"keypoint threads={threads}: use 1 or more")
        self.model_complexity, self.threads = model_complexity, threads
        self.out_dim = FEATURE_DIM

    @property
    def numerics(self) -> str:
        """What decides the features (for the feature store's key): the model and its version."""
        try:
            version = importlib.metadata.version("mediapipe")
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        return f"holistic={version};complexity={self.model_complexity};features={FEATURE_DIM}"

    def store_encoder(self) -> nn.Module:
        """What a feature store holds: the features themselves."""
        return self

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, t = frames.shape[:2]
        if frames.dtype != torch.uint8:
            raise TypeError(f"keypoints take the loader's uint8 frames, got {frames.dtype}")
        counts = [t] * b if lengths is None else lengths.tolist()
        # (B, T, 3, S, S) -> per clip (n, S, S, 3): the layout MediaPipe reads
        clips = [frames[i, :n].permute(0, 2, 3, 1).cpu().numpy() for i, n in enumerate(counts)]
        with ThreadPoolExecutor(min(self.threads, b)) as pool:
            found = list(pool.map(lambda c: detect(c, self.model_complexity), clips))
        out = torch.zeros(b, t, FEATURE_DIM)
        for i, (n, kp) in enumerate(zip(counts, found, strict=True)):
            if n:
                out[i, :n] = keypoint_features(torch.from_numpy(kp))
        return out.to(frames.device)
