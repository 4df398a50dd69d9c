"""Temporal augmentation of cached frame features: what a live clip's sampling would vary (speed,
where the sign starts and ends, frames missing), applied to a stored view at no decoding cost."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureAugment:
    """Resamples the real frames of one clip's features, (T, D) with `length` real rows.

    Args:
        speed: range of playback rates r; the kept frames are resampled to n / r frames (at
            most T): r > 1 a faster sign (frames skipped), r < 1 a slower one (frames repeated).
        crop: smallest fraction of the real frames kept, as one contiguous window at a random
            place (1.0 = always the whole clip).
        frame_dropout: probability of dropping each frame after resampling (at least one stays).
    """

    speed: tuple[float, float] = (1.0, 1.0)
    crop: float = 1.0
    frame_dropout: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.speed
        if not 0 < lo <= hi:
            raise ValueError(f"data.aug_speed={list(self.speed)}: need 0 < low <= high")
        if not 0 < self.crop <= 1:
            raise ValueError(f"data.aug_crop={self.crop}: need 0 < crop <= 1")
        if not 0 <= self.frame_dropout < 1:
            raise ValueError(f"data.aug_frame_dropout={self.frame_dropout}: need 0 <= p < 1")

    @property
    def active(self) -> bool:
        return self.speed != (1.0, 1.0) or self.crop < 1 or self.frame_dropout > 0

    def __call__(
        self, features: torch.Tensor, length: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, int]:
        """(T, D) features with `length` real rows -> new (T, D) features and their length."""
        t = features.shape[0]
        r = torch.rand(3, generator=generator).tolist()
        keep = max(1, round(length * (self.crop + (1 - self.crop) * r[0])))
        start = min(int(r[1] * (length - keep + 1)), length - keep)
        rate = self.speed[0] + (self.speed[1] - self.speed[0]) * r[2]
        n = min(t, max(1, round(keep / rate)))
        picks = start + torch.linspace(0, keep - 1, n).round().long()  # (n,) frame indices
        if self.frame_dropout > 0:
            kept = torch.rand(n, generator=generator) >= self.frame_dropout
            kept[torch.randint(n, (1,), generator=generator)] = True  # never an empty clip
            picks = picks[kept]
        out = torch.zeros_like(features)
        out[: len(picks)] = features[picks]  # (n', D), zero padding after
        return out, len(picks)
