"""Speed of the parts that decide a run's wall time, measured side by side on this machine:
`python -m slr.bench [image_size=224 num_frames=30 batch_size=4 clips=DIR]`; or slr against the
same network in another framework: `python -m slr.bench peer=keras` (see slr.peers.compare).

Prints a table and one JSON line. Each pair is timed alternately (A, B, A, B, ...) and reported as
medians, so that load from elsewhere on a shared machine hits both sides alike."""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torchvision.models import mobilenet_v2

from slr.data.dataset import ClipDataset
from slr.data.sampling import uniform_indices
from slr.data.transforms import ClipTransform
from slr.data.video import open_video
from slr.data.wlasl import Instance
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.peers import compare

log = logging.getLogger(__name__)


def alternate(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Run each fn (which returns a rate) `repeats` times, interleaved; median rate per fn."""
    for fn in fns.values():
        fn()  # warm-up: allocator, oneDNN kernels, file cache
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            rates[name].append(fn())
    return {name: statistics.median(r) for name, r in rates.items()}


def timed(fn: Callable[[], object], work: float) -> Callable[[], float]:
    """A rate: `work` units per second of one call of fn."""

    def rate() -> float:
        start = time.perf_counter()
        fn()
        return work / (time.perf_counter() - start)

    return rate


def train_step_rates(cfg: DictConfig) -> dict[str, float]:
    """Optimizer steps/s with the live backbone against cached features, same batch and model."""
    b, t, s = cfg.batch_size, cfg.num_frames, cfg.image_size
    torch.manual_seed(0)
    net = SignClassifier(2000, FrameEncoder(weights=None), lstm_hidden=cfg.lstm_hidden).train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    frames, features = torch.randn(b, t, 3, s, s), torch.randn(b, t, 1280)
    lengths, labels = torch.full((b,), t), torch.randint(2000, (b,))

    def step(logits_fn: Callable[[], torch.Tensor]) -> None:
        loss = F.cross_entropy(logits_fn(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def live() -> None:
        for _ in range(cfg.live_steps):
            step(lambda: net(frames, lengths))

    def cached() -> None:
        for _ in range(cfg.cached_steps):
            step(lambda: net.classify(features, lengths))

    return alternate(
        {"live": timed(live, cfg.live_steps), "cached": timed(cached, cfg.cached_steps)},
        cfg.repeats,
    )


def backbone_rates(cfg: DictConfig) -> dict[str, float]:
    """Frames/s: plain fp32 eager NCHW, all B*T frames in one call, against the project's encoder
    as extraction runs it (channels_last, chunked, inference mode)."""
    n, s = cfg.batch_size * cfg.num_frames, cfg.image_size
    torch.manual_seed(0)
    plain = mobilenet_v2(weights=None).features.eval()
    encoder = FrameEncoder(weights=None)
    frames = torch.randn(cfg.batch_size, cfg.num_frames, 3, s, s)
    flat = frames.flatten(0, 1)  # (B, T, 3, S, S) -> (B*T, 3, S, S)

    @torch.no_grad()
    def eager() -> None:
        plain(flat).mean(dim=(2, 3))

    @torch.inference_mode()
    def project() -> None:
        encoder(frames)

    rates = {"plain": timed(eager, n), "slr": timed(project, n)}
    if cfg.bf16:
        encoder_bf16 = FrameEncoder(weights=None, bf16=True)
        rates["slr_bf16"] = timed(torch.inference_mode()(lambda: encoder_bf16(frames)), n)
    return alternate(rates, cfg.repeats)


def clip_dataset(clips: str, num_frames: int, image_size: int) -> tuple[list[Path], ClipDataset]:
    """The .mp4 files in `clips` and an eval-mode dataset over them."""
    files = sorted(Path(clips).glob("*.mp4"))
    if not files:
        raise FileNotFoundError(f"bench.clips={clips} holds no .mp4 files")
    instances = [Instance(f.stem, 0, "", "test") for f in files]
    transform = ClipTransform(image_size=image_size)
    return files, ClipDataset(instances, files[0].parent, num_frames, transform)


@torch.inference_mode()
def bf16_feature_error(cfg: DictConfig) -> dict[str, float]:
    """How far bf16 autocast moves the encoder's features from fp32 on the real clips: cosine
    similarity and relative L2 error per frame (random-init backbone, as everywhere here)."""
    _, dataset = clip_dataset(cfg.clips, cfg.bf16_frames, cfg.image_size)
    fp32, bf16 = FrameEncoder(weights=None), FrameEncoder(weights=None, bf16=True)
    cosine, error = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        frames, n = item["frames"][None], int(item["length"])  # (1, T, 3, S, S)
        a, b = fp32(frames)[0, :n], bf16(frames)[0, :n]  # (n, 1280) each
        cosine.append(F.cosine_similarity(a, b, dim=1))
        error.append((a - b).norm(dim=1) / a.norm(dim=1))
    cos, err = torch.cat(cosine), torch.cat(error)
    return {
        "bf16_frames_compared": len(cos),
        "bf16_cosine_mean": cos.mean().item(),
        "bf16_cosine_min": cos.min().item(),
        "bf16_rel_error_mean": err.mean().item(),
        "bf16_rel_error_max": err.max().item(),
    }


def loader_rates(cfg: DictConfig) -> dict[str, float]:
    """Frames/s delivered: the project's clip loader (decode, crop, resize, normalize) against a
    bare PyAV decode of the same files converting the same sampled frames to RGB arrays."""
    files, dataset = clip_dataset(cfg.clips, cfg.num_frames, cfg.image_size)
    delivered = 0
    for i in range(len(dataset)):
        delivered += int(dataset[i]["length"])

    def bare() -> None:
        for path in files:
            with open_video(path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                decoded = list(container.decode(stream))
            for j in uniform_indices(len(decoded), cfg.num_frames):
                decoded[j].to_ndarray(format="rgb24")

    def project() -> None:
        for i in range(len(dataset)):
            dataset[i]

    rates = {"bare": timed(bare, delivered), "slr": timed(project, delivered)}
    return alternate(rates, cfg.loader_repeats)


def run(cfg: DictConfig) -> dict:
    torch.set_num_threads(torch.get_num_threads())
    steps = train_step_rates(cfg)
    backbone = backbone_rates(cfg)
    loader = loader_rates(cfg)
    # projected sweep over WLASL2000's training split: every run re-encodes every clip every epoch
    # live; cached, the clips x views are encoded (and decoded) once, then runs only read features
    clips, b, t = cfg.sweep_train_clips, cfg.batch_size, cfg.num_frames
    epochs = cfg.sweep_runs * cfg.sweep_epochs
    uncached_h = epochs * clips / (steps["live"] * b) / 3600
    extract_h = clips * cfg.cache_views * t * (1 / backbone["slr"] + 1 / loader["slr"]) / 3600
    cached_h = extract_h + epochs * clips / (steps["cached"] * b) / 3600
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "shape": {"batch": b, "frames": t, "image_size": cfg.image_size},
        "train_steps_per_s_live": steps["live"],
        "train_steps_per_s_cached": steps["cached"],
        "cache_speedup": steps["cached"] / steps["live"],
        "backbone_fps_plain": backbone["plain"],
        "backbone_fps_slr": backbone["slr"],
        "extract_speedup": backbone["slr"] / backbone["plain"],
        "loader_fps_bare_pyav": loader["bare"],
        "loader_fps_slr": loader["slr"],
        "loader_efficiency": loader["slr"] / loader["bare"],
        "sweep_hours_uncached": uncached_h,
        "sweep_hours_cached": cached_h,
    }
    if "slr_bf16" in backbone:
        result["backbone_fps_slr_bf16"] = backbone["slr_bf16"]
        result.update(bf16_feature_error(cfg))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}


def table(r: dict, cfg: DictConfig) -> str:
    sweep = f"{cfg.sweep_runs} runs x {cfg.sweep_epochs} epochs, {cfg.sweep_train_clips} clips"
    rows = [
        ("train steps/s, live backbone", r["train_steps_per_s_live"], ""),
        ("train steps/s, cached features", r["train_steps_per_s_cached"], ""),
        ("  cache_speedup", r["cache_speedup"], "target >= 30"),
        ("backbone frames/s, plain fp32 NCHW", r["backbone_fps_plain"], ""),
        ("backbone frames/s, slr extraction", r["backbone_fps_slr"], ""),
        ("  extract_speedup", r["extract_speedup"], "target >= 1.7"),
        ("loader frames/s, bare PyAV decode", r["loader_fps_bare_pyav"], ""),
        ("loader frames/s, slr ClipDataset", r["loader_fps_slr"], ""),
        ("  loader_efficiency", r["loader_efficiency"], "target >= 0.8"),
        (f"sweep hours uncached ({sweep})", r["sweep_hours_uncached"], ""),
        ("sweep hours cached (incl. extraction)", r["sweep_hours_cached"], ""),
    ]
    if "backbone_fps_slr_bf16" in r:
        rows[5:5] = [
            ("backbone frames/s, slr bf16", r["backbone_fps_slr_bf16"], ""),
            ("  bf16 feature cosine to fp32, mean", r["bf16_cosine_mean"], ""),
            ("  bf16 feature cosine to fp32, min", r["bf16_cosine_min"], ""),
            ("  bf16 feature relative error, mean", r["bf16_rel_error_mean"], ""),
            ("  bf16 feature relative error, max", r["bf16_rel_error_max"], ""),
        ]
    shape = r["shape"]
    head = f"B={shape['batch']} T={shape['frames']} {shape['image_size']}px on {r['machine']}"
    return "\n".join([head] + [f"{name:45} {value:10.4f}  {note}" for name, value, note in rows])


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    if cfg.get("peer") is not None:
        peer = OmegaConf.to_container(cfg.peer, resolve=True)
        result = compare.compare(**peer, log_dir=HydraConfig.get().runtime.output_dir)
        print(compare.table(result, peer["cases"]))
        print(json.dumps(result))
        return
    result = run(cfg)
    print(table(result, cfg))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
