"""Per-signer accuracy: on signer-disjoint splits (ASL Citizen's) the spread over test signers says
more about a model than the mean over their videos, which the most prolific signers dominate."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from slr.evaluation.report import Predictions

COLUMNS = ("signer", "videos", "top1", "top5")


def per_signer(pred: Predictions, signers: dict[str, str | None]) -> list[dict]:
    """One row per signer of the evaluated videos (`signers`: video_id -> signer), sorted by
    signer; empty when no evaluated video has a known signer."""
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, video_id in enumerate(pred.video_ids):
        signer = signers.get(video_id)
        if signer is not None:
            rows_of[signer].append(row)
    if not rows_of:
        return []
    k = min(5, pred.probs.shape[1])
    top = pred.probs.topk(k, dim=1).indices  # (N, k)
    hits = top == pred.labels[:, None]  # (N, k)
    out = []
    for signer in sorted(rows_of):
        idx = rows_of[signer]
        out.append(
            {
                "signer": signer,
                "videos": len(idx),
                "top1": round(hits[idx, 0].float().mean().item(), 6),
                "top5": round(hits[idx].any(dim=1).float().mean().item(), 6),
            }
        )
    return out


def signer_metrics(rows: list[dict]) -> dict[str, float | int]:
    """The spread of top-1 over signers: mean (each signer counts once), worst and best."""
    if not rows:
        return {}
    top1 = [r["top1"] for r in rows]
    return {
        "test/signers": len(rows),
        "test/top1_signer_mean": sum(top1) / len(top1),
        "test/top1_signer_min": min(top1),
        "test/top1_signer_max": max(top1),
    }


def write_per_signer_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
