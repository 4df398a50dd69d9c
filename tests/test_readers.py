"""The dataset readers (ASL Citizen, CSV, folders) on tiny datasets written here from the synthetic
WLASL clips: labels, splits, counted problems, the datamodule and the doctor on each; and, slow,
train -> slr.test (given only data.root) -> predict -> export on each format."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from slr.acquisition.health import scan_reader, summary_lines
from slr.data.datamodule import (
    ASLCitizenDataModule,
    CSVDataModule,
    FoldersDataModule,
    WLASLDataModule,
)
from slr.data.readers.asl_citizen import ASLCitizenReader
from slr.data.readers.base import DatasetFormatError, stratified_split
from slr.data.readers.csv import CSVReader
from slr.data.readers.folders import FoldersReader
from slr.data.wlasl import Instance
from slr.doctor import doctor
from slr.evaluation.report import Predictions
from slr.evaluation.signers import per_signer, signer_metrics
from slr.runs.records import record_data
from tests.helpers import TINY, compose_cfg

ASL_HEADER = ["Participant ID", "Video file", "Gloss", "ASL-LEX Code"]


def tiny_videos(tiny_root: Path) -> list[dict]:
    """The tiny WLASL dataset's videos: id, gloss, split, file, and a signer (P1..P3)."""
    index = json.loads((tiny_root / "WLASL_v0.3.json").read_text())
    videos = []
    for entry in index:
        for n, inst in enumerate(entry["instances"]):
            videos.append(
                {
                    "id": inst["video_id"],
                    "gloss": entry["gloss"],
                    "split": inst["split"],
                    "file": tiny_root / "videos" / f"{inst['video_id']}.mp4",
                    "signer": f"P{n % 3 + 1}",
                }
            )
    return videos


def place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy(src, dest)


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="session")
def asl_root(tiny_root, tmp_path_factory) -> Path:
    """ASL Citizen's layout: splits/{train,val,test}.csv (its column names), videos/."""
    root = tmp_path_factory.mktemp("asl_citizen")
    rows: dict[str, list] = {"train": [], "val": [], "test": []}
    for v in tiny_videos(tiny_root):
        name = f"{v['id']}-{v['gloss'].upper()}.mp4"
        place(v["file"], root / "videos" / name)
        rows[v["split"]].append([v["signer"], name, v["gloss"].upper(), "A_01_001"])
    for split, split_rows in rows.items():
        write_csv(root / "splits" / f"{split}.csv", ASL_HEADER, split_rows)
    return root


@pytest.fixture(scope="session")
def csv_root(tiny_root, tmp_path_factory) -> Path:
    """A CSV without a split column, clips in a subfolder, half of them with a time range."""
    root = tmp_path_factory.mktemp("csv_data")
    rows = []
    for n, v in enumerate(tiny_videos(tiny_root)):
        rel = f"clips/{v['id']}.mp4"
        place(v["file"], root / rel)
        start, end = ("0.04", "") if n % 2 else ("", "")
        rows.append([rel, v["gloss"], start, end, v["signer"]])
    write_csv(root / "labels.csv", ["path", "gloss", "start", "end", "signer"], rows)
    return root


@pytest.fixture(scope="session")
def folders_root(tiny_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folders")
    for v in tiny_videos(tiny_root):
        place(v["file"], root / v["gloss"] / f"{v['id']}.mp4")
    return root


# --- ASL Citizen ---------------------------------------------------------------------------------


def test_asl_citizen_reads_its_splits_glosses_and_signers(asl_root):
    index = ASLCitizenReader(asl_root).read()
    assert index.glosses == ["GROW", "OPEN", "SHRINK"]  # sorted, from the split files
    assert {s: len(v) for s, v in index.splits.items()} == {"train": 12, "val": 6, "test": 6}
    inst = index.splits["test"][0]
    assert inst.signer in {"P1", "P2", "P3"}
    assert inst.bbox is None and inst.time_range() == (0.0, None)
    assert inst.label == index.glosses.index(inst.gloss)
    assert (asl_root / "videos" / inst.file()).is_file()
    assert not any(index.problems.values())


def test_asl_citizen_counts_what_it_leaves_out(asl_root, tmp_path):
    root = tmp_path / "asl"
    shutil.copytree(asl_root / "splits", root / "splits")
    (root / "videos").symlink_to(asl_root / "videos")
    test_csv = root / "splits" / "test.csv"
    with open(test_csv, "a", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["P9", "new.mp4", "UNSEEN", "x"])  # a gloss training never saw
        writer.writerow(["P9", "blank.mp4", "", "x"])  # no gloss
        writer.writerow(["P9"])  # does not parse
    header, *train_rows = read_rows(root / "splits" / "train.csv")
    write_csv(root / "splits" / "val.csv", header, [train_rows[0]])  # a repeated video
    index = ASLCitizenReader(root).read()
    p = index.problems
    assert [len(p[k]) for k in ("unknown_glosses", "empty_glosses", "unparsable_rows")] == [1, 1, 1]
    assert "UNSEEN" in p["unknown_glosses"][0]
    assert p["duplicate_ids"] == [f"val: {train_rows[0][1]}"]
    assert len(index.splits["val"]) == 0 and len(index.splits["test"]) == 6


def test_asl_citizen_reads_by_position_and_refuses_a_bad_root(asl_root, tmp_path):
    root = tmp_path / "asl"
    for split in ("train", "val", "test"):
        rows = read_rows(asl_root / "splits" / f"{split}.csv")
        write_csv(root / "splits" / f"{split}.csv", ["pid", "file", "sign", "code"], rows[1:])
    assert len(ASLCitizenReader(root).read().splits["train"]) == 12
    with pytest.raises(FileNotFoundError, match=r"splits/train\.csv"):
        ASLCitizenReader(tmp_path / "nowhere").read()


def test_asl_citizen_gloss_file_sets_the_label_order(asl_root, tmp_path):
    (tmp_path / "glosses.txt").write_text("SHRINK\nGROW\n")
    index = ASLCitizenReader(asl_root, str(tmp_path / "glosses.txt")).read()
    assert index.glosses == ["SHRINK", "GROW"]
    assert len(index.problems["unknown_glosses"]) == 8  # OPEN's 4 + 2 + 2 videos
    assert {i.label for i in index.splits["train"]} == {0, 1}


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_without_split_column_gets_a_seeded_stratified_split(csv_root):
    a = CSVReader(csv_root, "labels.csv", val_fraction=0.25, test_fraction=0.25).read()
    b = CSVReader(csv_root, str(csv_root / "labels.csv"), val_fraction=0.25, test_fraction=0.25)
    b = b.read()
    assert a.assigned_splits
    assert a.glosses == ["grow", "open", "shrink"]
    # 8 videos per gloss: 2 test, 2 val, 4 train each
    assert {s: len(v) for s, v in a.splits.items()} == {"train": 12, "val": 6, "test": 6}
    assert a.splits == b.splits  # the same file and seed: the same split
    other = CSVReader(csv_root, "labels.csv", val_fraction=0.25, test_fraction=0.25, split_seed=1)
    assert other.read().splits != a.splits
    ranged = [i for s in a.splits.values() for i in s if i.frame_start > 1]
    assert ranged and ranged[0].time_range() == pytest.approx((0.04, None))


def test_csv_rows_that_do_not_parse_are_counted(tmp_path):
    rows = [
        ["a.mp4", "hello", "train", "0.5", "1.5", "1", "2", "30", "40", "s1"],
        ["b.mp4", "hello", "training", "", "", "", "", "", "", ""],  # unknown split
        ["c.mp4", "hello", "train", "2", "1", "", "", "", "", ""],  # end before start
        ["d.mp4", "hello", "val", "", "", "5", "", "", "", ""],  # partial bbox
        ["e.mp4", "", "train", "", "", "", "", "", "", ""],  # empty gloss
        ["a.mp4", "hello", "test", "", "", "", "", "", "", ""],  # duplicate
        ["f.mp4", "bye", "test", "", "", "", "", "", "", ""],  # gloss not in train
        ["g.mp4", "hello", "test"],  # wrong cell count
    ]
    header = ["path", "gloss", "split", "start", "end", "x1", "y1", "x2", "y2", "signer"]
    write_csv(tmp_path / "l.csv", header, rows)
    index = CSVReader(tmp_path, "l.csv").read()
    (a,) = index.splits["train"]
    assert (a.bbox, a.signer, a.time_range()) == ((1, 2, 30, 40), "s1", (0.5, 1.5))
    assert {k: len(v) for k, v in index.problems.items()} == {
        "unparsable_rows": 4,
        "empty_glosses": 1,
        "duplicate_ids": 1,
        "unknown_glosses": 1,
    }
    assert "l.csv:3" in index.problems["unparsable_rows"][0]


def test_csv_frames_are_counted_at_the_frame_rate(tmp_path):
    write_csv(tmp_path / "l.csv", ["gloss", "path", "start", "end"], [["x", "a.mp4", "26", "50"]])
    (inst,) = CSVReader(tmp_path, "l.csv", time_unit="frames", frame_rate=25).read().splits["train"]
    assert inst.time_range() == pytest.approx((1.0, 2.0))


@pytest.mark.parametrize(
    ("header", "rows", "error", "match"),
    [
        (["file", "gloss"], [["a.mp4", "x"]], DatasetFormatError, "missing \\['path'\\]"),
        (["path", "gloss", "x1"], [["a", "b", "1"]], DatasetFormatError, "all four"),
        (["path", "gloss", "strat"], [["a", "b", "c"]], DatasetFormatError, "unknown \\['strat'"),
        (["path", "gloss"], [["a.mp4", ""]], DatasetFormatError, "no usable training video"),
    ],
)
def test_csv_that_cannot_be_used_is_a_clear_error(tmp_path, header, rows, error, match):
    write_csv(tmp_path / "l.csv", header, rows)
    with pytest.raises(error, match=match):
        CSVReader(tmp_path, "l.csv").read()


def test_csv_missing_file_and_bad_settings(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.csv"):
        CSVReader(tmp_path, "nope.csv").read()
    with pytest.raises(ValueError, match="time_unit"):
        CSVReader(tmp_path, "l.csv", time_unit="ms")


# --- folders and the split -----------------------------------------------------------------------


def test_folders_reader(folders_root, tmp_path):
    root = tmp_path / "f"
    shutil.copytree(folders_root, root)
    (root / "empty_gloss").mkdir()
    (root / "features" / "abc").mkdir(parents=True)  # the feature cache: not a gloss
    (root / "stray.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("ignored")
    index = FoldersReader(root).read()
    assert index.glosses == ["grow", "open", "shrink"]
    assert index.assigned_splits
    assert sum(len(v) for v in index.splits.values()) == 24
    assert index.splits["test"][0].video_id.split("/")[0] in index.glosses
    assert index.problems["empty_glosses"] == ["empty_gloss/: no video files"]
    assert index.problems["unparsable_rows"] == ["stray.mp4: not in a gloss folder"]


def test_stratified_split_keeps_train_and_is_per_gloss():
    insts = [Instance(f"{g}{n}", -1, g, "train") for g, k in (("a", 10), ("b", 3), ("c", 1))
             for n in range(k)]  # fmt: skip
    out = stratified_split(insts, 0.2, 0.1, seed=0)
    count = {(i.gloss, i.split): 0 for i in out}
    for i in out:
        count[i.gloss, i.split] += 1
    assert count["a", "test"] == 1 and count["a", "val"] == 2 and count["a", "train"] == 7
    assert count["b", "test"] == 1 and count["b", "val"] == 1 and count["b", "train"] == 1
    assert count == {**count, ("c", "train"): 1} and ("c", "val") not in count
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(insts, 0.6, 0.5, seed=0)


# --- datamodule, run records, doctor -------------------------------------------------------------


def test_csv_datamodule_records_missing_problems_and_a_reusable_split(csv_root, tmp_path):
    root = tmp_path / "csv"
    shutil.copytree(csv_root, root)
    labels = (root / "labels.csv").read_text()
    (root / "labels.csv").write_text(labels + "clips/gone.mp4,grow,,,P1\nbad.mp4,,,,\n")
    dm = CSVDataModule(str(root), "labels.csv", num_frames=4, image_size=32, num_workers=0)
    assert dm.num_classes == 3
    counts = record_data(dm, tmp_path / "run")
    assert sum(counts[s]["missing"] for s in ("train", "val", "test")) == 1
    assert counts["problems"] == {"empty_glosses": 1}
    assert counts["data"]["csv"] == "labels.csv"
    assert counts["data"]["datamodule"] == "slr.data.datamodule.CSVDataModule"
    problems = json.loads((tmp_path / "run" / "data_problems.json").read_text())
    assert problems == {"empty_glosses": ["labels.csv:27: bad.mp4"]}
    # the run's splits.csv read back through the CSV reader: the same split, labels and ranges
    again = CSVDataModule(str(root), str(tmp_path / "run" / "splits.csv"), num_workers=0)
    assert not again.index.assigned_splits
    assert again.index.splits == dm.index.splits
    spec = dm.dataset_spec
    assert spec["_target_"] == "slr.data.datamodule.CSVDataModule" and spec["trimmed"] is False
    item = dm.dataset("train")[0]
    assert item["frames"].shape == (4, 3, 32, 32)


@pytest.mark.parametrize(
    ("fmt", "cls"),
    [("asl_citizen", ASLCitizenDataModule), ("csv", CSVDataModule), ("folders", FoldersDataModule)],
)
def test_data_configs_compose_and_instantiate(fmt, cls, tmp_path):
    extra = ["data.csv=labels.csv"] if fmt == "csv" else []
    cfg = compose_cfg("train", [f"data={fmt}", "data.root=/x", *extra], tmp_path)
    dm = instantiate(cfg.data)
    assert type(dm) is cls and dm.hparams.trimmed is False
    assert dm.hparams.num_frames == 30  # the shared clip settings come from data/wlasl.yaml
    assert set(cls.reader_keys) <= set(dm.hparams)


def test_other_readers_refuse_wlasl_settings(folders_root):
    with pytest.raises(ValueError, match="data.subset"):
        FoldersDataModule(str(folders_root), subset=100)
    assert WLASLDataModule("/x").dataset_spec == {
        "_target_": "slr.data.datamodule.WLASLDataModule",
        "subset": 100,
        "split_file": None,
    }


@pytest.mark.parametrize("fmt", ["asl_citizen", "csv", "folders"])
def test_doctor_reports_on_each_format(fmt, asl_root, csv_root, folders_root, tmp_path):
    root = {"asl_citizen": asl_root, "csv": csv_root, "folders": folders_root}[fmt]
    extra = ["data.csv=labels.csv"] if fmt == "csv" else []
    cfg = compose_cfg(
        "doctor",
        [f"data={fmt}", f"data.root={root}", *extra, f"output={tmp_path / 'd.json'}"],
        tmp_path / "run",
    )
    report = doctor(cfg)
    (summary,) = report["protocols"].values()
    assert summary["glosses"] == 3
    assert sum(summary["splits"][s]["available"] for s in ("train", "val", "test")) == 24
    assert report["unreadable"] == {} and report["missing"] == []
    assert json.loads((tmp_path / "run" / "doctor.json").read_text()) == report


def test_doctor_counts_unreadable_missing_and_problems(folders_root, tmp_path):
    root = tmp_path / "f"
    shutil.copytree(folders_root, root)
    victim = sorted((root / "grow").iterdir())[0]
    victim.write_bytes(b"<html>not a video</html>")
    (root / "empty").mkdir()
    report = scan_reader(FoldersReader(root), check="open", workers=2)
    assert list(report["unreadable"]) == [f"grow/{victim.name}"]
    assert report["problems"] == {"empty_glosses": ["empty/: no video files"]}
    text = "\n".join(summary_lines(report))
    assert "1 empty glosses left out" in text and f"grow/{victim.name}" in text


def test_per_signer_accuracy():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    pred = Predictions(["a", "b", "c", "d"], torch.tensor([0, 1, 1, 0]), probs, {})
    rows = per_signer(pred, {"a": "s1", "b": "s1", "c": "s2", "d": None})
    assert rows == [
        {"signer": "s1", "videos": 2, "top1": 1.0, "top5": 1.0},
        {"signer": "s2", "videos": 1, "top1": 0.0, "top5": 1.0},
    ]
    assert signer_metrics(rows)["test/top1_signer_mean"] == 0.5
    assert per_signer(pred, {}) == []


# --- end to end ----------------------------------------------------------------------------------

E2E = [
    *TINY,
    "trainer=cpu",
    "model.backbone.weights=null",
    "data.features=cached",
    "data.crop_scale=[1.0,1.0]",
    "data.color_jitter=0.0",
]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["asl_citizen", "csv", "folders"])
def test_train_test_predict_export_on_each_format(fmt, asl_root, csv_root, folders_root, tmp_path):
    from slr.inference.export import export, load_exported
    from slr.inference.predictor import Predictor
    from slr.models.checkpoint import load_checkpoint
    from slr.test import evaluate
    from slr.train import train

    src = {"asl_citizen": asl_root, "csv": csv_root, "folders": folders_root}[fmt]
    root = tmp_path / "data"
    shutil.copytree(src, root, symlinks=True)  # its own feature cache
    extra = {
        "asl_citizen": [],
        "csv": ["data.csv=labels.csv", "data.val_fraction=0.25", "data.test_fraction=0.25"],
        "folders": ["data.val_fraction=0.25", "data.test_fraction=0.25"],
    }[fmt]
    cfg = compose_cfg("train", [f"data={fmt}", f"data.root={root}", *extra, *E2E], tmp_path / "t")
    metrics = train(cfg)
    assert metrics["test/videos"] == 6 and metrics["val/top1"] is not None
    run = tmp_path / "t"
    assert (run / "splits.csv").is_file() == (fmt != "asl_citizen")
    module = load_checkpoint(metrics["best_ckpt"])
    assert module.hparams.dataset["_target_"].endswith(
        {
            "asl_citizen": "ASLCitizenDataModule",
            "csv": "CSVDataModule",
            "folders": "FoldersDataModule",
        }[fmt]
    )

    # slr.test given only the checkpoint and data.root (the loader settings only shrink it)
    test_cfg = compose_cfg(
        "test",
        [f"ckpt_path={metrics['best_ckpt']}", f"data.root={root}", *TINY[2:4], "trainer=cpu"],
        tmp_path / "test",
    )
    tested = evaluate(test_cfg)
    for key in ("test/top1", "test/top5", "test/top1_class"):
        assert tested[key] == pytest.approx(metrics[key], abs=1e-6), key
    if fmt != "folders":  # ASL Citizen and this CSV name their signers
        header, *rows = read_rows(tmp_path / "test" / "per_signer.csv")
        assert header == ["signer", "videos", "top1", "top5"]
        assert {r[0] for r in rows} <= {"P1", "P2", "P3"}
        assert sum(int(r[1]) for r in rows) == 6 == tested["test/videos"]
        assert tested["test/signers"] == len(rows)
        assert tested["test/top1_signer_min"] <= tested["test/top1_signer_mean"]
        assert tested["report"]["per_signer_csv"] == "per_signer.csv"
    else:
        assert not (tmp_path / "test" / "per_signer.csv").exists()

    # predict on one test clip, and export the whole network
    clip = next(p for p in root.rglob("*.mp4") if "features" not in p.parts)
    result = Predictor(metrics["best_ckpt"], device="cpu", topk=2)(clip)
    assert result["glosses"][0] in module.hparams.glosses
    path = export(metrics["best_ckpt"], "torchscript", tmp_path / "m.torchscript.pt")
    logits = load_exported(path, "torchscript")(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))
    assert logits.shape == (1, 3)
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["glosses"] == module.hparams.glosses
