"""Temporal sampling: which `num_frames` of a clip's frames the model sees. Random jitter for
training (a different view each epoch), evenly spaced for evaluation (the same view every time),
or several evenly shifted evaluation windows (views) whose predictions are averaged.

Training sees each clip as `num_frames` segments with one random frame from each (TSN-style), so
every evaluation window also spans the whole clip; windows differ by where in each segment they
sample. View 0 of 1 is exactly `uniform_indices`."""

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


def shifted_indices(num_available: int, num_frames: int, num_views: int) -> list[list[int]]:
    """`num_views` lists of frame indices: the evenly spaced grid of `uniform_indices`, shifted by
    evenly spread fractions of its step, (v + 0.5) / V - 0.5 for view v (0 for one view), and
    clamped to the clip. A clip no longer than `num_frames` has one window, every frame, V times.
    """
    if num_available <= num_frames:
        return [list(range(num_available))] * num_views
    grid = torch.linspace(0, num_available - 1, num_frames)  # (T,)
    step = (num_available - 1) / max(num_frames - 1, 1)
    shifts = (torch.arange(num_views) + 0.5) / num_views - 0.5  # (V,), in steps
    picks = grid[None, :] + shifts[:, None] * step  # (V, 1) + (1, T) -> (V, T)
    return picks.round().clamp_(0, num_available - 1).long().tolist()
