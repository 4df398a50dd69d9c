"""Temporal sampling: which `num_frames` of a clip's frames the model sees. Random jitter for
training (a different view each epoch), evenly spaced for evaluation (the same view every time)."""

from __future__ import annotations

import torch


def uniform_indices(num_available: int, num_frames: int) -> list[int]:
    """Evenly spaced frame indices from first to last; every frame when the clip is shorter."""
    if num_available <= num_frames:
        return list(range(num_available))
    return torch.linspace(0, num_available - 1, num_frames).round().long().tolist()


def jittered_indices(
    num_available: int, num_frames: int, generator: torch.Generator | None = None
) -> list[int]:
    """One random frame from each of `num_frames` equal segments (TSN-style), in order; every frame
    when the clip is shorter."""
    if num_available <= num_frames:
        return list(range(num_available))
    edges = torch.linspace(0, num_available, num_frames + 1)  # segment boundaries
    starts, widths = edges[:-1], edges[1:] - edges[:-1]
    picks = starts + torch.rand(num_frames, generator=generator) * widths
    return picks.floor().long().clamp_(max=num_available - 1).tolist()
