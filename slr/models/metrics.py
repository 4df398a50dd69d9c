"""Top-k accuracy per instance and per class, as one torchmetrics Metric (synced across ranks)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

# The one source of the metric names: every stage (val, test) is logged, checkpointed on and
# written to metrics.json as `<stage>/<name>`; status.json, slr.aggregate and the best-epoch
# record read these.
ACCURACY = ("top1", "top5", "top1_class", "top5_class")
EVAL_METRICS = (*ACCURACY, "videos", "skipped")  # what SignLitModule logs per evaluation epoch
MONITOR = "val/top1"  # what picks the best epoch (ModelCheckpoint, BestEpoch, sweepers)
VAL_KEYS = (*(f"val/{name}" for name in ACCURACY), "val/videos")  # the best epoch's record


class TopKAccuracy(Metric):
    """Top-k accuracy for several k at once, both per instance and per class.

    `top{k}` is the fraction of videos whose label is among the k highest logits; `top{k}_class`
    is the mean over classes of that fraction, over the classes that have at least one video (what
    the official WLASL I3D script reports). Unlike torchmetrics' MulticlassAccuracy(average=
    "macro"), a class with no video never counts as 0 because some video was predicted as it.
    """

    full_state_update = False

    def __init__(self, num_classes: int, ks: Sequence[int] = (1, 5)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ks = tuple(ks)
        self.add_state("hits", torch.zeros(len(self.ks), num_classes), dist_reduce_fx="sum")
        self.add_state("support", torch.zeros(num_classes), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """logits (N, C), target (N,)."""
        kmax = min(max(self.ks), self.num_classes)
        ranked = logits.topk(kmax, dim=1).indices  # (N, kmax)
        match = ranked == target[:, None]  # (N, kmax): where the label sits in the ranking
        for j, k in enumerate(self.ks):
            self.hits[j].index_add_(0, target, match[:, :k].any(dim=1).float())
        self.support.index_add_(0, target, torch.ones_like(target, dtype=torch.float))

    def compute(self) -> dict[str, torch.Tensor]:
        present = self.support > 0
        total = self.support.sum().clamp(min=1)
        out = {}
        for j, k in enumerate(self.ks):
            out[f"top{k}"] = self.hits[j].sum() / total
            per_class = self.hits[j][present] / self.support[present]
            out[f"top{k}_class"] = per_class.mean() if present.any() else total.new_zeros(())
        return out

    def per_class(self, k: int = 1) -> torch.Tensor:
        """(C,) top-k accuracy of each class; NaN where a class has no video."""
        hits = self.hits[self.ks.index(k)]
        return torch.where(self.support > 0, hits / self.support.clamp(min=1), torch.nan)


def chance_accuracy(k: int, num_classes: int) -> float:
    """Top-k accuracy of a uniformly random ranking: per instance and, equally, per class."""
    return min(k, num_classes) / num_classes


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class, from (N,) pred/target."""
    flat = target * num_classes + pred  # (N,) cell index in the row-major (C, C) matrix
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)  # (C*C,) -> (C, C)
