"""The table of every run under a sweep or output directory (`python -m slr.aggregate DIR`):

Columns: the overrides that differ between runs, val and test top-1/top-5, epochs, wall time and
status; the best run by val top-1 is marked. Runs that differ only in `seed` are folded into one
row of mean ± std. Prints Markdown and writes DIR/aggregate.md and DIR/aggregate.csv.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from slr.data.files import atomic_write_text

METRICS = {  # column -> key in metrics.json
    f"{stage} top-{k}": f"{stage}/top{k}" for stage in ("val", "test") for k in (1, 5)
}
PERCENT = set(METRICS)
FOLDED = ("seed",)  # runs differing only in these keys are repeats of one setting
# how a run was started, not what it trained: a resumed run's overrides gain ckpt_path=last
NOT_SETTINGS = ("ckpt_path",)


@dataclass
class Run:
    path: Path
    overrides: dict[str, str]
    status: str
    values: dict[str, float | None]  # METRICS columns + epochs + wall_s
    error: str | None = None


@dataclass
class Row:
    runs: list[Run]
    setting: dict[str, str]  # the overrides shared by its runs, FOLDED keys left out
    stats: dict[str, tuple[float, float | None, int]] = field(default_factory=dict)  # mean, std, n


def process_gone(status: dict) -> bool:
    """Whether the process a `running` status.json names is known to have ended: only
    decidable on the host it ran on (a live run elsewhere, a SLURM node, stays `running`)."""
    pid, host = status.get("pid"), status.get("host")
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)  # signal 0: no signal, only whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process of that number: alive
        return False
    return False


def read_run(path: Path) -> Run:
    """A run directory: .hydra/overrides.yaml, metrics.json and status.json (any may be absent)."""

    def load(name: str, reader) -> dict | list | None:
        file = path / name
        try:
            return reader(file.read_text()) if file.is_file() else None
        except Exception as e:  # noqa: BLE001 - any parse error: name the file
            raise ValueError(f"{file}: unreadable ({e}); delete or fix it") from e

    overrides = load(".hydra/overrides.yaml", lambda t: list(OmegaConf.create(t))) or []
    metrics = load("metrics.json", json.loads) or {}
    status = load("status.json", json.loads) or {}
    state = status.get("status") or ("done" if metrics else "unknown")
    error = status.get("error")
    if state == "running" and process_gone(status):
        state = "dead"
        error = (
            f"its process ({status['pid']} on {status['host']}) is gone: killed without a "
            f"chance to say so; resume with hydra.run.dir={path} ckpt_path=last"
        )
    elif state == "running" and status.get("epoch") is not None:
        state = f"running (epoch {status['epoch']})"
    values = {col: metrics.get(key) for col, key in METRICS.items()}
    if not metrics:  # an unfinished run: its best val so far, from status.json
        values["val top-1"] = status.get(METRICS["val top-1"])
    epochs = metrics.get("epochs")
    if epochs is None and status.get("epoch") is not None:
        epochs = status["epoch"] + 1
    values["epochs"] = epochs
    values["wall_s"] = metrics.get("wall_s", status.get("wall_s"))
    return Run(
        path=path,
        overrides={
            key: value
            for key, value in (o.split("=", 1) for o in overrides if "=" in o)
            if key not in NOT_SETTINGS
        },
        status=state,
        values=values,
        error=error,
    )


def find_runs(root: Path) -> list[Run]:
    """Every directory under root (or root itself) holding a status.json or metrics.json."""
    dirs = {p.parent for name in ("status.json", "metrics.json") for p in root.rglob(name)}

    def natural(p: Path) -> list:  # multirun/.../2 before .../10
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]

    return [read_run(d) for d in sorted(dirs, key=natural)]


def group(runs: list[Run]) -> tuple[list[Row], list[str]]:
    """Rows of runs equal in every override except FOLDED ones; and the override keys that differ
    between rows (the table's leading columns)."""
    keys = sorted({k for r in runs for k in r.overrides})
    differ = [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]
    rows: dict[tuple, Row] = {}
    for run in runs:
        setting = {k: run.overrides.get(k, "") for k in differ if k not in FOLDED}
        rows.setdefault(tuple(setting.items()), Row(runs=[], setting=setting)).runs.append(run)
    for row in rows.values():
        for col in [*METRICS, "epochs", "wall_s"]:
            xs = [r.values[col] for r in row.runs if r.values[col] is not None]
            if xs:
                std = statistics.stdev(xs) if len(xs) > 1 else None
                row.stats[col] = (statistics.fmean(xs), std, len(xs))
    return list(rows.values()), [k for k in differ if k not in FOLDED]


def short(value: str) -> str:
    """An optuna-sampled 0.00019182157424526137 shows as 0.0001918."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and "." in value else value


def row_status(row: Row) -> str:
    if len(row.runs) == 1:
        return row.runs[0].status
    counts: dict[str, int] = {}
    for run in row.runs:
        counts[run.status] = counts.get(run.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def fmt(col: str, stat: tuple[float, float | None, int] | None) -> str:
    """Percent with one decimal, whole epochs, durations; `mean ± std` for folded seeds."""
    if stat is None:
        return "-"
    mean, std, _ = stat
    if col in PERCENT:
        show = lambda x: f"{100 * x:.1f}"  # noqa: E731
    elif col == "epochs":
        show = lambda x: f"{x:.0f}" if std is None or std == 0 else f"{x:.1f}"  # noqa: E731
    else:
        show = duration
    return show(mean) if std is None else f"{show(mean)} ± {show(std)}"


def table(rows: list[Row], keys: list[str], root: Path) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the Markdown table; the best row by mean val top-1 gets a `*`."""
    scored = [r for r in rows if "val top-1" in r.stats]
    best = max(scored, key=lambda r: r.stats["val top-1"][0]) if scored else None
    header = ["best", *keys, "runs", *METRICS, "epochs", "wall", "status", "dir"]
    cells = []
    for row in rows:
        first = row.runs[0].path
        where = first.relative_to(root) if first != root else Path(".")
        cells.append(
            [
                "*" if row is best else "",
                *(short(row.setting[k]) for k in keys),
                str(len(row.runs)),
                *(fmt(col, row.stats.get(col)) for col in METRICS),
                fmt("epochs", row.stats.get("epochs")),
                fmt("wall_s", row.stats.get("wall_s")),
                row_status(row),
                f"{where}" + (f" (+{len(row.runs) - 1})" if len(row.runs) > 1 else ""),
            ]
        )
    return header, cells


def markdown(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[Row], keys: list[str]) -> None:
    """One line per row with plain numbers (fractions, seconds): mean, std and n per metric.
    Written whole, as runs ending at once may each rewrite the table."""
    cols = [*METRICS, "epochs", "wall_s"]
    header = [*keys, "runs", "status", "dirs"]
    for col in cols:
        name = col.replace(" ", "_").replace("-", "")
        header += [name, f"{name}_std", f"{name}_n"]
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        line = [*(row.setting[k] for k in keys), len(row.runs), row_status(row)]
        line.append(";".join(str(r.path) for r in row.runs))
        for col in cols:
            mean, std, n = row.stats.get(col, (None, None, 0))
            line += [mean, std, n]
        writer.writerow(line)
    atomic_write_text(path, out.getvalue())


def aggregate(root: Path) -> str:
    """Build the table of the runs under root, write aggregate.md/.csv there, return Markdown."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory (give a sweep or output directory)")
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(
            f"no runs under {root}: no status.json or metrics.json found; give the directory of "
            "a sweep (multirun/<date>/<time>-<uid>) or of runs (outputs/)"
        )
    rows, keys = group(runs)
    header, cells = table(rows, keys, root)
    text = markdown(header, cells)
    failed = [r for r in runs if r.status in ("failed", "dead")]
    if failed:
        errors = ["- {}: {}\n".format(r.path, " ".join(str(r.error).split())) for r in failed]
        text += "\nFailed runs (status.json has each traceback):\n\n" + "".join(errors)
    atomic_write_text(root / "aggregate.md", text)
    write_csv(root / "aggregate.csv", rows, keys)
    return text
