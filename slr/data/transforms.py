"""Spatial preprocessing presets built from a few numbers: a square crop around the signer's bbox,
resize, and (train only) clip-consistent random resized crop and colour jitter. Clips stay uint8
RGB: the model normalizes them (a quarter of the bytes between loader workers and the model).
The same crop and
colour change apply to every frame of a clip, so augmentation never fakes motion."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Box = tuple[int, int, int, int]  # x1, y1, x2, y2; x2 and y2 exclusive

log = logging.getLogger(__name__)
MIN_BOX_SIDE = 4  # pixels of a box left inside the frame below which it is no crop of a signer
CLAMP_SILENTLY = 2  # pixels a box may overshoot the frame without a warning (rounding)
_warned: set[tuple] = set()  # (name, bbox, width, height): one warning per video, not per epoch


def checked_box(bbox: Box | None, width: int, height: int, name: str = "") -> Box | None:
    """The bbox to crop around: clamped to the `width` x `height` frame, or None (the frame's
    centre square, as for a clip without a bbox) where it is inverted, of zero size or
    leaves less than MIN_BOX_SIDE pixels inside the frame (an annotation made on another
    resolution, a typo). Warns once per video `name` when it had to change the box."""
    if bbox is None:
        return None
    x1, y1, x2, y2 = bbox
    c = (max(x1, 0), max(y1, 0), min(x2, width), min(y2, height))
    problem, use = "", c
    if x2 <= x1 or y2 <= y1:
        problem, use = "is empty or inverted (x2 <= x1 or y2 <= y1); cropping as without one", None
    elif c[2] - c[0] < MIN_BOX_SIDE or c[3] - c[1] < MIN_BOX_SIDE:
        problem, use = f"lies outside the {width}x{height} frame; cropping as without one", None
    elif max(abs(a - b) for a, b in zip(c, bbox, strict=True)) > CLAMP_SILENTLY:
        problem = f"reaches outside the {width}x{height} frame; clamped to {list(c)}"
    key = (name, tuple(bbox), width, height)
    if problem and key not in _warned:
        _warned.add(key)
        log.warning("%s: bbox %s %s", name or "video", list(bbox), problem)
    return use


def square_box(bbox: Box | None, width: int, height: int, margin: float) -> Box:
    """The square around `bbox` (grown by `margin` of its longer side), shifted to lie inside the
    frame and shrunk to the frame's shorter side where it does not fit. No bbox: the centre square.
    """
    if bbox is None:
        bbox = (0, 0, width, height)
    x1, y1, x2, y2 = (min(max(v, 0), lim) for v, lim in zip(bbox, (width, height) * 2, strict=True))
    side = min(max(x2 - x1, y2 - y1) * (1 + margin), width, height)
    side = max(1, int(round(side)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, left + side, top + side


def random_resized_box(
    box: Box, width: int, height: int, scale: tuple[float, float], generator=None
) -> Box:
    """A random square of `scale` (area fraction) of `box`, at a random place inside box's
    neighbourhood, clipped to the frame: random resized crop for a clip, drawn once per clip."""
    x1, y1, x2, y2 = box
    r = torch.rand(3, generator=generator).tolist()
    side = (x2 - x1) * math.sqrt(scale[0] + (scale[1] - scale[0]) * r[0])
    side = max(1, int(round(side)))
    left = int(round(x1 + (x2 - x1 - side) * r[1]))
    top = int(round(y1 + (y2 - y1 - side) * r[2]))
    left, top = min(max(left, 0), width - side), min(max(top, 0), height - side)
    return left, top, left + side, top + side


@dataclass
class ClipTransform:
    """Turns cropped uint8 RGB frames into the model's input.

    Args:
        image_size: output side in pixels.
        train: draw a random resized crop and colour jitter per clip.
        bbox_margin: the square crop around the bbox is this fraction larger than its longer side.
        crop_scale: area range of the train-time random resized crop, relative to the square.
        color_jitter: strength of brightness/contrast/saturation jitter (0 disables).
        hflip_p: horizontal flip probability; 0 by default as flipping swaps the dominant hand.
    """

    image_size: int = 224
    train: bool = False
    bbox_margin: float = 0.15
    crop_scale: tuple[float, float] = (0.7, 1.0)
    color_jitter: float = 0.2
    hflip_p: float = 0.0

    def box(self, bbox: Box | None, width: int, height: int, generator=None, name: str = "") -> Box:
        """The crop (x1, y1, x2, y2) for one clip of a `width` x `height` video; a bbox that
        makes no sense in that frame is clamped or dropped, with a warning naming `name`."""
        bbox = checked_box(bbox, width, height, name)
        box = square_box(bbox, width, height, self.bbox_margin)
        if self.train and self.crop_scale[0] < 1.0:
            box = random_resized_box(box, width, height, tuple(self.crop_scale), generator)
        return box

    def __call__(self, crops: np.ndarray, generator=None) -> torch.Tensor:
        """(T, S, S, 3) uint8 crops (see `video.crop_resize`) -> (T, 3, S, S) uint8 RGB."""
        x = torch.from_numpy(crops).permute(0, 3, 1, 2)  # (T, S, S, 3) -> (T, 3, S, S), a view
        return self._augment(x, generator) if self.train else x

    def _augment(self, x: torch.Tensor, generator) -> torch.Tensor:
        r = torch.rand(4, generator=generator).tolist()
        if self.color_jitter > 0:
            j = self.color_jitter
            x = TF.adjust_brightness(x, 1 + j * (2 * r[0] - 1))
            x = TF.adjust_contrast(x, 1 + j * (2 * r[1] - 1))
            x = TF.adjust_saturation(x, 1 + j * (2 * r[2] - 1))
        if r[3] < self.hflip_p:
            x = x.flip(-1)
        return x
