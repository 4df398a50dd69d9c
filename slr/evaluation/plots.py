"""The test report's pictures (PNG): confusion matrix, per-class accuracy, training curves.
matplotlib is an optional extra (`pip install -e ".[report]"`); `plots_unavailable` says why not."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from slr.evaluation.report import Report

log = logging.getLogger(__name__)

CONFUSION_MAX_CLASSES = 30  # more than this and the matrix shows only the most-confused glosses
LABELLED_MAX_CLASSES = 60  # more than this and per-class bars lose their gloss names


def plots_unavailable() -> str | None:
    """None when plots can be drawn, else the reason they cannot."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return f"matplotlib is not installed ({e}); pip install -e '.[report]' to get the plots"
    return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def most_confused(confusion: torch.Tensor, n: int) -> list[int]:
    """The n classes with the most wrong top-1 predictions, as true class plus as predicted one,
    in label order."""
    errors = confusion.clone().fill_diagonal_(0)  # (C, C)
    involvement = errors.sum(dim=0) + errors.sum(dim=1)  # (C,)
    top = involvement.argsort(descending=True, stable=True)[:n]
    return sorted(top[involvement[top] > 0].tolist()) or sorted(top.tolist())


def plot_confusion(path: Path, confusion: torch.Tensor, glosses: Sequence[str]) -> None:
    """Row-normalized confusion (colour) with counts (numbers); for many glosses, the sub-matrix
    of the most-confused ones."""
    plt = _pyplot()
    num_classes = len(glosses)
    if num_classes <= CONFUSION_MAX_CLASSES:
        keep, title = list(range(num_classes)), f"Confusion matrix ({num_classes} glosses)"
    else:
        keep = most_confused(confusion, CONFUSION_MAX_CLASSES)
        title = f"Confusion among the {len(keep)} most-confused of {num_classes} glosses"
    sub = confusion[keep][:, keep]  # (K, K)
    rows = confusion[keep].sum(dim=1, keepdim=True).clamp(min=1)  # all of a gloss's videos
    side = max(5.0, 0.32 * len(keep) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow((sub / rows).numpy(), cmap="Blues", vmin=0, vmax=1)
    label = "fraction of the true gloss's videos"
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    names = [glosses[c] for c in keep]
    ax.set_xticks(range(len(keep)), names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(keep)), names, fontsize=8)
    ax.set_xlabel("predicted gloss (top-1)")
    ax.set_ylabel("true gloss")
    ax.set_title(title, fontsize=10)
    for i, j in sub.nonzero().tolist():
        value = sub[i, j].item()
        dark = value / rows[i].item() > 0.6
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if dark else "black")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_class(
    path: Path,
    top1: torch.Tensor,
    top5: torch.Tensor,
    glosses: Sequence[str],
    chance: float,
) -> None:
    """Per-gloss top-1 accuracy sorted from best to worst (top-5 behind it), over the glosses that
    have test videos, with their mean and chance."""
    plt = _pyplot()
    present = (~top1.isnan()).nonzero().squeeze(1)
    key = top1[present] + 1e-3 * top5[present]  # ties in top-1 broken by top-5
    order = present[key.argsort(descending=True, stable=True)]
    n = len(order)
    fig, ax = plt.subplots(figsize=(max(7.0, min(0.22 * n + 2, 16.0)), 4.5))
    x = range(n)
    ax.bar(x, top5[order].numpy(), width=1.0 if n > LABELLED_MAX_CLASSES else 0.8,
           color="#c6dbef", label="top-5")  # fmt: skip
    ax.bar(x, top1[order].numpy(), width=1.0 if n > LABELLED_MAX_CLASSES else 0.8,
           color="#2171b5", label="top-1")  # fmt: skip
    if n:
        ax.axhline(top1[order].mean().item(), color="black", lw=1, ls="--",
                   label=f"mean top-1 {100 * top1[order].mean().item():.1f}%")  # fmt: skip
    ax.axhline(chance, color="red", lw=1, ls=":", label=f"chance top-1 {100 * chance:.1f}%")
    if n <= LABELLED_MAX_CLASSES:
        ax.set_xticks(list(x), [glosses[c] for c in order.tolist()], rotation=90, fontsize=8)
    else:
        ax.set_xlabel(f"{n} glosses with test videos, sorted by top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title("Per-class accuracy on the test split")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # clear of the bars
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_epoch_metrics(csv_path: Path) -> dict[str, dict[int, float]]:
    """A Lightning CSVLogger file as {metric: {epoch: last value logged in that epoch}}."""
    series: dict[str, dict[int, float]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                number = float(value)
                if not math.isnan(number):
                    series.setdefault(key, {})[epoch] = number
    return series


CURVES = {  # panel -> the metrics it draws, when the log has them
    "loss": ("train/loss", "val/loss"),
    "accuracy": ("train/top1", "val/top1", "val/top5"),
}


def plot_training_curves(path: Path, series: dict[str, dict[int, float]]) -> None:
    """Loss and accuracy per epoch, one panel each."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (panel, keys) in zip(axes, CURVES.items(), strict=True):
        for key in keys:
            if key in series:
                epochs = sorted(series[key])
                ax.plot(epochs, [series[key][e] for e in epochs], marker=".", label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1.02)
    fig.suptitle("Training curves")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(run_dir: Path, report: Report, glosses: list[str], ckpt_path: str) -> dict:
    """The PNGs that can be drawn, and for each one that cannot, why."""
    written, skipped = [], {}
    names = ("confusion_matrix.png", "per_class_accuracy.png", "training_curves.png")
    reason = plots_unavailable()
    if reason:
        log.warning("plots skipped: %s", reason)
        return {"plots": [], "plots_skipped": dict.fromkeys(names, reason)}
    plot_confusion(run_dir / names[0], report.confusion, glosses)
    plot_per_class(
        run_dir / names[1],
        report.per_class_top1,
        report.per_class_top5,
        glosses,
        report.metrics["test/chance_top1"],
    )
    written += names[:2]
    # the checkpoint sits in RUN/checkpoints/, the training log in RUN/csv/metrics.csv
    train_log = Path(ckpt_path).resolve().parent.parent / "csv" / "metrics.csv"
    series = read_epoch_metrics(train_log) if train_log.is_file() else {}
    if series:
        plot_training_curves(run_dir / names[2], series)
        written.append(names[2])
    else:
        skipped[names[2]] = f"no per-epoch training log at {train_log}"
        log.warning("training curves skipped: no per-epoch training log at %s", train_log)
    return {"plots": written, "plots_skipped": skipped}
