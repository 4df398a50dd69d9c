"""slr.predict on real clips and broken files: one result or one error per video, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from slr.data.dataset import ClipDataset
from slr.data.transforms import ClipTransform
from slr.data.wlasl import Instance
from slr.inference.predictor import Predictor, find_videos, frame_range, predict_all
from slr.models.checkpoint import load_checkpoint
from slr.runs.cli import require
from tests.helpers import save_random_checkpoint

GLOSSES = [f"gloss{i}" for i in range(8)]
REAL = ("07074", "05743", "00624")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.ckpt", GLOSSES)


@pytest.fixture
def mixed_folder(shared_wlasl, tmp_path) -> Path:
    """Three real clips, a corrupt mp4, an empty one and a file that is no video."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for video_id in REAL:
        (folder / f"{video_id}.mp4").symlink_to(shared_wlasl / "clips" / f"{video_id}.mp4")
    real = (shared_wlasl / "clips" / f"{REAL[0]}.mp4").read_bytes()
    payload = real.index(b"mdat") + 4  # the container's header intact, its video data zeroed
    (folder / "corrupt.mp4").write_bytes(real[:payload] + bytes(len(real) - payload))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.txt").write_text("not a video\n")
    return folder


@pytest.mark.slow
def test_cli_on_a_folder_with_broken_files(ckpt, mixed_folder, tmp_path):
    out = tmp_path / "results" / "predictions.jsonl"  # a folder that does not exist yet
    cmd = [sys.executable, "-m", "slr.predict", f"ckpt_path={ckpt}", f"input={mixed_folder}"]
    cmd.append(f"output={out}")
    # from the repo root, so this checkout's slr is the one imported
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2, proc.stderr
    assert "corrupt.mp4" in errors[0] and "empty.mp4" in errors[1]
    assert "3 of 5 videos classified, 2 failed" in proc.stdout
    for stage in ("decode", "backbone", "LSTM+head", "total"):
        assert stage in proc.stdout.split("videos classified")[-1]

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["video"]).name for r in lines] == sorted(
        [f"{v}.mp4" for v in REAL] + ["corrupt.mp4", "empty.mp4"]
    )
    ok = [r for r in lines if "error" not in r]
    assert len(ok) == 3
    for r in ok:
        assert len(r["glosses"]) == 5 and set(r["glosses"]) <= set(GLOSSES)
        assert r["probabilities"] == sorted(r["probabilities"], reverse=True)
        assert 0 < sum(r["probabilities"]) <= 1 + 1e-5
        assert set(r["timing"]) == {"decode", "backbone", "lstm_head"}
        assert r["seconds"] == pytest.approx(sum(r["timing"].values()), abs=1e-3)
    assert all(r["error"] for r in lines if "error" in r)


def test_predictor_matches_the_evaluation_pipeline(ckpt, shared_wlasl):
    """Same frames, crop and numbers as slr.test's loader for a real clip and its bbox."""
    entry = next(
        e
        for e in json.loads((shared_wlasl / "clips" / "manifest.json").read_text())
        if e["video_id"] == REAL[1]
    )
    predictor = Predictor(ckpt, device="cpu", topk=8)
    result = predictor(shared_wlasl / "clips" / f"{REAL[1]}.mp4", bbox=tuple(entry["bbox"]))
    inst = Instance(REAL[1], 0, "x", "test", bbox=tuple(entry["bbox"]))
    item = ClipDataset([inst], shared_wlasl / "clips", 4, ClipTransform(32))[0]
    net = load_checkpoint(ckpt).net  # unfolded BatchNorm: folding must not change the output
    with torch.no_grad():
        probs = net(item["frames"][None], item["length"][None]).softmax(-1)[0]
    expected = {GLOSSES[i]: p for i, p in enumerate(probs.tolist())}
    for gloss, p in zip(result["glosses"], result["probabilities"], strict=True):
        assert p == pytest.approx(expected[gloss], abs=1e-5)


@pytest.mark.slow
def test_named_file_that_is_no_video_is_one_error(ckpt, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert find_videos(bad) == [bad]  # a file named on the command line is always tried
    (result,) = predict_all(Predictor(ckpt, device="cpu"), [bad])
    assert "error" in result and result["video"] == str(bad)


def test_inputs_and_ranges_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_videos(tmp_path / "nope")
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(FileNotFoundError, match="no video files"):
        find_videos(tmp_path)
    assert frame_range(1, -1, 25) == (0.0, None)
    assert frame_range(26, 50, 25) == (1.0, 2.0)
    with pytest.raises(ValueError, match="frame_end"):
        frame_range(10, 5, 25)


@pytest.mark.parametrize("name", ["predict", "export"])
def test_configs_need_a_checkpoint(name):
    GlobalHydra.instance().clear()
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose(config_name=name)
    GlobalHydra.instance().clear()
    assert OmegaConf.is_missing(cfg, "ckpt_path")
    with pytest.raises(ValueError, match=r"^ckpt_path(, input)? must be set, e\.g\. python -m"):
        require(cfg, f"python -m slr.{name} ckpt_path=...")
    if name == "predict":
        assert OmegaConf.is_missing(cfg, "input") and cfg.topk == 5 and cfg.num_views == 1
    else:
        assert cfg.format == "onnx"


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "size", "fps"),
    [
        ("odd.mov", "libx264", "yuv444p", (35, 21), 30000 / 1001),  # odd size, NTSC rate
        ("deep.mp4", "libx264", "yuv420p10le", (64, 48), 25),  # 10-bit
        ("tall.mkv", "mpeg4", "yuv420p", (98, 162), 50),  # portrait
        ("mjpeg.avi", "mjpeg", "yuvj422p", (64, 64), 15),
        ("anim.gif", "gif", "rgb8", (40, 30), 10),
    ],
)
@pytest.mark.slow
def test_any_size_rate_and_codec(ckpt, tmp_path, name, codec, pix_fmt, size, fps):

    path, (width, height) = tmp_path / name, size
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for _ in range(6):
                pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8).numpy()
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    except av.FFmpegError as e:
        pytest.skip(f"this PyAV build cannot write {codec}/{pix_fmt}: {e}")
    result = Predictor(ckpt, device="cpu")(path)
    assert result["frames"] == 4 and len(result["glosses"]) == 5
