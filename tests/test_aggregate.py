"""slr.aggregate on hand-made run directories: differing overrides, seed folding, best row,
failed and running runs, the CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from slr.aggregate import main
from slr.runs.aggregate import aggregate


def fake_run(path: Path, overrides: list[str], status: str = "done", **metrics) -> None:
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    state = {"status": status, "epoch": 4, "wall_s": 60.0}
    if status == "failed":
        state["error"] = "RuntimeError: out of memory\nat line 3"
    else:
        state["val/top1"] = metrics.get("val/top1")
    (path / "status.json").write_text(json.dumps(state))
    if status == "done":
        full = {"epochs": 5, "wall_s": 90.0, "val/top5": 0.9, "test/top5": 0.8, **metrics}
        (path / "metrics.json").write_text(json.dumps(full))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    base = ["data.root=/d", "data.subset=100"]
    fake_run(
        tmp_path / "0",
        [*base, "model.lstm_hidden=256", "seed=1"],
        **{"val/top1": 0.50, "test/top1": 0.40},
    )
    fake_run(
        tmp_path / "1",
        [*base, "model.lstm_hidden=256", "seed=2", "ckpt_path=last"],  # resumed: same setting
        **{"val/top1": 0.60, "test/top1": 0.50},
    )
    fake_run(
        tmp_path / "2",
        [*base, "model.lstm_hidden=512", "seed=1"],
        **{"val/top1": 0.52, "test/top1": 0.47},
    )
    fake_run(tmp_path / "10", [*base, "model.lstm_hidden=1024", "seed=1"], status="failed")
    fake_run(
        tmp_path / "3",
        [*base, "model.lstm_hidden=2048", "seed=1"],
        status="running",
        **{"val/top1": 0.3},
    )
    return tmp_path


def rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_table_folds_seeds_and_marks_the_best(sweep):
    header, _, *body = rows(aggregate(sweep))
    # only the overrides that differ; seed is folded, not a column
    assert header[:3] == ["best", "model.lstm_hidden", "runs"]
    by_hidden = {r[1]: dict(zip(header, r, strict=True)) for r in body}
    assert list(by_hidden) == ["256", "512", "2048", "1024"]  # run-directory order: 0, 2, 3, 10
    folded = by_hidden["256"]
    assert folded["runs"] == "2"
    assert folded["val top-1"] == "55.0 ± 7.1"  # mean and sample std of 50 and 60
    assert folded["test top-1"] == "45.0 ± 7.1"
    assert folded["status"] == "2 done"
    assert folded["epochs"] == "5 ± 0"
    assert folded["wall"] == "1m 30s ± 0s"
    # best by mean val top-1: 55.0 beats the single 52.0
    assert [r["best"] for r in by_hidden.values()] == ["*", "", "", ""]
    assert by_hidden["512"]["val top-1"] == "52.0"
    assert by_hidden["1024"]["status"] == "failed"
    assert by_hidden["2048"]["status"] == "running (epoch 4)"
    assert by_hidden["2048"]["val top-1"] == "30.0"  # best so far, from status.json


def test_failures_listed_and_files_written(sweep):
    table = aggregate(sweep)
    assert "RuntimeError: out of memory at line 3" in table
    assert (sweep / "aggregate.md").read_text() == table
    with (sweep / "aggregate.csv").open() as f:
        lines = list(csv.DictReader(f))
    first = lines[0]
    assert first["model.lstm_hidden"] == "256"
    assert float(first["val_top1"]) == pytest.approx(0.55)
    assert first["val_top1_n"] == "2"


def test_cli_errors_name_the_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "no runs under" in capsys.readouterr().err
