"""Which data a number was computed on, as tables: nominal against available videos per split,
glosses left with no video, and what a reader left out. slr.train and slr.test log it for the
run's own data; slr.doctor (slr.acquisition.health) for every protocol on disk."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slr.data.wlasl import SPLITS, VIDEO_DIR, Instance, SubsetIndex


def split_summary(index: SubsetIndex, available: Callable[[Instance], bool]) -> dict:
    """Per split: nominal, available and missing videos, and the glosses with no video there."""
    splits, empty = {}, {}
    for split in SPLITS:
        insts = index.splits[split]
        have = [i for i in insts if available(i)]
        splits[split] = {
            "nominal": len(insts),
            "available": len(have),
            "missing": len(insts) - len(have),
        }
        present = {i.label for i in have}
        empty[split] = [g for label, g in enumerate(index.glosses) if label not in present]
    return {
        "glosses": len(index.glosses),
        "splits": splits,
        "classes_without_videos": empty,
        "unknown_split_ids": len(index.unknown_ids),
    }


def format_table(protocols: dict[str, dict]) -> str:
    """One line per protocol and split: nominal, available, missing, glosses without a video."""
    head = f"{'data':25} {'split':5} {'nominal':>8} {'available':>9} {'missing':>8}"
    head += f" {'no-video glosses':>17}"
    lines = [head]
    for name, summary in protocols.items():
        for split in SPLITS:
            c = summary["splits"][split]
            empty = f"{len(summary['classes_without_videos'][split])} of {summary['glosses']}"
            lines.append(
                f"{name:25} {split:5} {c['nominal']:8d} {c['available']:9d} {c['missing']:8d} "
                f"{empty:>17}"
            )
    return "\n".join(lines)


def summary_lines(report: dict, limit: int = 10) -> Iterable[str]:
    """The table, then the glosses without videos and the unreadable files (first `limit`)."""
    yield format_table(report["protocols"])
    for name, summary in report["protocols"].items():
        for split, glosses in summary["classes_without_videos"].items():
            if glosses:
                more = f" (+{len(glosses) - limit} more)" if len(glosses) > limit else ""
                yield f"{name} {split}: no video for {', '.join(glosses[:limit])}{more}"
    for kind, items in report.get("problems", {}).items():  # only the non-WLASL readers
        more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
        yield f"{len(items)} {kind.replace('_', ' ')} left out: {'; '.join(items[:limit])}{more}"
    bad = report.get("unreadable", {})
    if bad and "reader" in report:
        yield f"{len(bad)} unreadable files under {report['video_dir']}:"
        yield from (f"  {v}: {why}" for v, why in list(bad.items())[:limit])
    elif bad:
        yield f"{len(bad)} unreadable files under {VIDEO_DIR}/:"
        yield from (f"  {v}.mp4: {why}" for v, why in list(bad.items())[:limit])
