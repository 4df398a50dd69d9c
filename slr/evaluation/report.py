"""The test report: top-1/5/10 per instance and per class against chance, what was evaluated of
the split, and a per-gloss table (accuracy and the gloss each one is most often mistaken for)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from slr.models.metrics import TopKAccuracy, chance_accuracy, confusion_counts

KS = (1, 5, 10)
PER_GLOSS_COLUMNS = (
    "gloss",
    "label",
    "videos",
    "top1",
    "top5",
    "top10",
    "mistaken_for",  # the gloss its videos are most often predicted as, when wrong
    "mistaken_count",  # how many of its videos were predicted as that gloss
)


@dataclass
class Predictions:
    """Video-level results of one split: what `SignLitModule.predict_step` returns, gathered."""

    video_ids: list[str]
    labels: torch.Tensor  # (N,) int64
    probs: torch.Tensor  # (N, C) float32, softmax averaged over a video's views
    errors: dict[str, str]  # video_id -> decode error, for videos that were not evaluated

    @classmethod
    def gather(cls, outputs: Sequence[dict], num_classes: int) -> Predictions:
        done = [o for o in outputs if o["video_id"]]
        errors = {k: v for o in outputs for k, v in o["errors"].items()}
        if not done:
            empty = torch.zeros(0, num_classes)
            return cls([], torch.zeros(0, dtype=torch.long), empty, errors)
        return cls(
            video_ids=[v for o in done for v in o["video_id"]],
            labels=torch.cat([o["label"] for o in done]),
            probs=torch.cat([o["probs"] for o in done]),
            errors=errors,
        )


@dataclass
class Report:
    """Everything the test run writes, computed from `Predictions`."""

    metrics: dict[str, float | int]  # "test/top1", "test/top1_class", "test/chance_top1", ...
    per_gloss: list[dict]  # one row per gloss, PER_GLOSS_COLUMNS
    confusion: torch.Tensor  # (C, C) int64, true x predicted top-1
    per_class_top1: torch.Tensor  # (C,) NaN where a gloss has no video
    per_class_top5: torch.Tensor  # (C,)
    glosses_without_videos: list[str]


def build_report(pred: Predictions, glosses: Sequence[str], num_views: int = 1) -> Report:
    """Metrics and the per-gloss table. Per-class accuracies average over glosses with at least one
    evaluated video; the glosses without one are listed instead of counted as zeros."""
    num_classes = len(glosses)
    acc = TopKAccuracy(num_classes, ks=KS)
    if len(pred.labels):
        acc.update(pred.probs, pred.labels)
    values = {f"test/{k}": v.item() for k, v in acc.compute().items()}
    per_class = {k: acc.per_class(k) for k in KS}  # (C,) each, NaN without videos
    support = acc.support.long()  # (C,)
    confusion = confusion_counts(pred.probs.argmax(dim=1), pred.labels, num_classes)
    errors = confusion.clone().fill_diagonal_(0)  # (C, C) wrong top-1 predictions only

    rows = []
    for c, gloss in enumerate(glosses):
        row = {"gloss": gloss, "label": c, "videos": int(support[c])}
        for k in KS:
            row[f"top{k}"] = round(per_class[k][c].item(), 6) if support[c] else ""
        worst = int(errors[c].argmax())
        wrong = int(errors[c, worst])
        row["mistaken_for"] = glosses[worst] if wrong else ""
        row["mistaken_count"] = wrong
        rows.append(row)

    without = [g for g, n in zip(glosses, support.tolist(), strict=True) if n == 0]
    metrics = {
        **values,
        "test/videos": len(pred.video_ids),
        "test/skipped": len(pred.errors),
        **{f"test/chance_top{k}": chance_accuracy(k, num_classes) for k in KS},
        "test/classes": num_classes,
        "test/classes_without_videos": len(without),
        "test/num_views": num_views,
    }
    return Report(metrics, rows, confusion, per_class[1], per_class[5], without)


def write_per_gloss_csv(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PER_GLOSS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def summary_table(report: Report, split_counts: dict) -> str:
    """The report as the lines `slr.test` logs."""
    m = report.metrics
    views = m["test/num_views"]
    lines = [
        f"test split: {m['test/videos']} of {split_counts['nominal']} nominal videos evaluated "
        f"({split_counts['missing']} missing, {m['test/skipped']} failed to decode); "
        f"{m['test/classes']} glosses; {views} view{'s' if views > 1 else ''} per video",
        f"{'accuracy':<10}{'per instance':>14}{'per class':>12}{'chance':>10}",
    ]
    for k in KS:
        cells = [m[f"test/top{k}"], m[f"test/top{k}_class"], m[f"test/chance_top{k}"]]
        widths = (13, 11, 9)
        lines.append(
            f"{f'top-{k}':<10}"
            + "".join(f"{100 * v:>{w}.2f}%" for v, w in zip(cells, widths, strict=True))
        )
    without = report.glosses_without_videos
    line = f"glosses with no evaluated test video: {len(without)}"
    if without:
        more = f", ... ({len(without) - 20} more)" if len(without) > 20 else ""
        line += f" ({', '.join(without[:20])}{more}); left out of the per-class means"
    lines.append(line)
    return "\n".join(lines)
