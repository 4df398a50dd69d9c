"""slr.test's report: metrics, per-gloss CSV and plots agree; multi-view testing averages."""

from __future__ import annotations

import csv
import json
import shutil
import sys

import pytest
import torch

from slr.data.dataset import ClipDataset
from slr.data.sampling import shifted_indices, uniform_indices
from slr.data.transforms import ClipTransform
from slr.data.wlasl import read_subset
from slr.evaluation.report import Predictions, build_report
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.models.module import SignLitModule
from slr.test import evaluate
from slr.train import train
from tests.helpers import TINY, compose_cfg

PNG = b"\x89PNG\r\n\x1a\n"
OLD_KEYS = ("top1", "top5", "top1_class", "top5_class", "videos", "skipped")


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory):
    """A 2-epoch training run on the tiny dataset: its best checkpoint (inside RUN/checkpoints)."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_cfg("train", ["experiment=demo", f"data.root={tiny_root}", *TINY], run_dir)
    return train(cfg)["best_ckpt"]


def run_test(tiny_root, ckpt, out, *overrides):
    overrides = ["experiment=demo", f"data.root={tiny_root}", f"ckpt_path={ckpt}", *overrides]
    return evaluate(compose_cfg("test", [*overrides, *TINY[2:4]], out))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_files_agree_with_metrics(tiny_root, trained, tmp_path):
    metrics = run_test(tiny_root, trained, tmp_path)
    assert json.loads((tmp_path / "test_metrics.json").read_text()) == metrics
    for key in OLD_KEYS:
        assert f"test/{key}" in metrics, key
    assert metrics["test/videos"] == 6
    assert metrics["videos"]["test"]["nominal"] == 6
    assert metrics["test/chance_top1"] == pytest.approx(1 / 3)
    assert metrics["test/top10"] == 1.0  # 3 glosses: the label is always among the top 10
    assert metrics["test/classes_without_videos"] == 0

    rows = read_rows(tmp_path / "per_gloss.csv")
    assert [r["gloss"] for r in rows] == ["grow", "shrink", "open"]
    videos = [int(r["videos"]) for r in rows]
    assert sum(videos) == metrics["test/videos"]
    for k in (1, 5, 10):
        acc = [float(r[f"top{k}"]) for r in rows]
        per_instance = sum(a * n for a, n in zip(acc, videos, strict=True)) / sum(videos)
        assert per_instance == pytest.approx(metrics[f"test/top{k}"], abs=1e-5)
        assert sum(acc) / len(acc) == pytest.approx(metrics[f"test/top{k}_class"], abs=1e-5)
    for r in rows:
        wrong = round(int(r["videos"]) * (1 - float(r["top1"])))
        assert int(r["mistaken_count"]) <= wrong
        assert bool(r["mistaken_for"]) == (wrong > 0)
        assert r["mistaken_for"] != r["gloss"]

    assert metrics["report"]["plots_skipped"] == {}
    for name in ("confusion_matrix.png", "per_class_accuracy.png", "training_curves.png"):
        assert name in metrics["report"]["plots"]
        assert (tmp_path / name).read_bytes()[:8] == PNG, name


def test_without_matplotlib_everything_but_plots(tiny_root, trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    metrics = run_test(tiny_root, trained, tmp_path)
    assert metrics["report"]["plots"] == []
    reasons = metrics["report"]["plots_skipped"]
    assert set(reasons) == {"confusion_matrix.png", "per_class_accuracy.png", "training_curves.png"}
    assert all("matplotlib is not installed" in r for r in reasons.values())
    assert not list(tmp_path.glob("*.png"))
    assert (tmp_path / "per_gloss.csv").is_file()
    assert metrics["test/videos"] == 6


def test_checkpoint_outside_a_run_skips_only_the_curves(tiny_root, trained, tmp_path):
    ckpt = shutil.copy(trained, tmp_path / "moved.ckpt")
    metrics = run_test(tiny_root, ckpt, tmp_path / "test")
    assert metrics["report"]["plots"] == ["confusion_matrix.png", "per_class_accuracy.png"]
    assert "no per-epoch training log" in metrics["report"]["plots_skipped"]["training_curves.png"]


@pytest.mark.slow
def test_multiview_evaluation(tiny_root, trained, tmp_path):
    metrics = run_test(tiny_root, trained, tmp_path, "test.num_views=3")
    assert metrics["test/num_views"] == 3
    assert metrics["test/videos"] == 6 and metrics["test/skipped"] == 0


def test_shifted_windows():
    assert shifted_indices(100, 10, 1) == [uniform_indices(100, 10)]
    views = shifted_indices(100, 10, 3)
    assert len(views) == 3 and len({tuple(v) for v in views}) == 3
    for v in views:
        assert len(v) == 10 and v == sorted(v) and v[0] >= 0 and v[-1] <= 99
    step = 99 / 9  # each window spans the clip, shifted by a third of the grid step
    assert views[0][4] < uniform_indices(100, 10)[4] < views[2][4]
    assert views[2][4] - views[0][4] == pytest.approx(2 / 3 * step, abs=1)
    assert shifted_indices(5, 10, 2) == [[0, 1, 2, 3, 4]] * 2  # short clip: every frame


def test_multiview_dataset_decodes_v_windows(tiny_root):
    index = read_subset(tiny_root / "WLASL_v0.3.json", None)
    insts, videos = index.splits["test"][:1], tiny_root / "videos"
    clips = ClipDataset(insts, videos, 4, ClipTransform(32))
    assert clips[0]["frames"].shape == (4, 3, 32, 32)
    item = ClipDataset(insts, videos, 4, ClipTransform(32), num_views=3)[0]
    assert item["frames"].shape == (3, 4, 3, 32, 32) and item["length"].tolist() == [4] * 3
    assert not torch.equal(item["frames"][0], item["frames"][2])
    # the middle of 3 views is the one-view evaluation clip (shift 0)
    assert torch.equal(item["frames"][1], clips[0]["frames"])
    with pytest.raises(ValueError, match="num_views"):
        ClipDataset(insts, videos, 4, ClipTransform(32, train=True), num_views=2)


@pytest.mark.slow
def test_predict_step_averages_view_softmax():
    torch.manual_seed(0)
    net = SignClassifier(5, FrameEncoder(weights=None), lstm_hidden=8).eval()
    module = SignLitModule(net, glosses=list("abcde")).eval()
    frames = torch.randint(0, 256, (2, 3, 4, 3, 32, 32), dtype=torch.uint8)  # (B, V, T, 3, S, S)
    lengths = torch.tensor([[4, 4, 4], [3, 3, 3]])
    batch = {"frames": frames, "length": lengths, "label": torch.tensor([0, 1])}
    out = module.predict_step({**batch, "video_id": ["x", "y"], "errors": {}}, 0)
    with torch.no_grad():
        per_view = [net(frames[:, v], lengths[:, v]).softmax(-1) for v in range(3)]  # (B, C) each
    expected = torch.stack(per_view).mean(0)
    torch.testing.assert_close(out["probs"], expected)
    assert not torch.allclose(per_view[0], per_view[2])  # the views really differ


def test_report_counts_glosses_without_videos():
    glosses = ["a", "b", "c", "d"]
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0], [0.2, 0.1, 0.7, 0.0]])
    labels = torch.tensor([0, 2, 2])  # "b" is mistaken for once; "b" and "d" have no video
    report = build_report(Predictions(["1", "2", "3"], labels, probs, {"4": "bad"}), glosses)
    m = report.metrics
    assert m["test/top1"] == pytest.approx(2 / 3)
    assert m["test/top1_class"] == pytest.approx((1 + 0.5) / 2)  # over a and c only
    assert m["test/skipped"] == 1 and m["test/classes_without_videos"] == 2
    assert report.glosses_without_videos == ["b", "d"]
    rows = {r["gloss"]: r for r in report.per_gloss}
    assert rows["c"]["mistaken_for"] == "b" and rows["c"]["mistaken_count"] == 1
    assert rows["b"]["top1"] == "" and rows["b"]["videos"] == 0


@pytest.mark.slow
def test_val_split_evaluation_equals_training_val(tiny_root, trained, tmp_path):
    # test.split=val: the best checkpoint's val numbers, as training logged them
    metrics = run_test(tiny_root, trained, tmp_path, "test.split=val")
    assert metrics["test/split"] == "val"
    assert metrics["test/videos"] == 6  # the tiny dataset's 2 val clips per gloss
    logged = torch.load(trained, weights_only=False)["callbacks"]
    best = next(
        v
        for k, v in logged.items()
        if k.startswith("ModelCheckpoint") and v["best_model_score"] is not None
    )
    assert metrics["test/top1"] == pytest.approx(float(best["best_model_score"]), abs=1e-6)
    with pytest.raises(ValueError, match="test.split"):
        run_test(tiny_root, trained, tmp_path / "bad", "test.split=train")
