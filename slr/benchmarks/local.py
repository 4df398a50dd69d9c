"""The local cases of `python -m slr.bench`: training steps with the live backbone against cached
features, the backbone as extraction runs it against plain eager torch, and the clip loader
against a bare PyAV decode. Each pair is timed alternately; every repeat is kept."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torchvision.models import mobilenet_v2

from slr.benchmarks.timing import alternate, medians, spread, timed
from slr.data.dataset import ClipDataset
from slr.data.sampling import uniform_indices
from slr.data.transforms import ClipTransform
from slr.data.video import open_video
from slr.data.wlasl import Instance
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier


def train_step_rates(cfg: DictConfig) -> dict[str, list[float]]:
    """Optimizer steps/s with the live backbone against cached features, same batch and model."""
    b, t, s = cfg.batch_size, cfg.num_frames, cfg.image_size
    torch.manual_seed(0)
    net = SignClassifier(2000, FrameEncoder(weights=None), lstm_hidden=cfg.lstm_hidden).train()
    # as conf/optimizer/adamw.yaml builds it for training: the fused (one kernel) AdamW
    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=1e-4, fused=True
    )
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


def backbone_rates(cfg: DictConfig) -> dict[str, list[float]]:
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


def loader_rates(cfg: DictConfig) -> dict[str, list[float]]:
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


# each measure of the JSON line: (its key, the rates it comes from, which of them)
MEASURES = {
    "train_steps_per_s_live": ("steps", "live"),
    "train_steps_per_s_cached": ("steps", "cached"),
    "backbone_fps_plain": ("backbone", "plain"),
    "backbone_fps_slr": ("backbone", "slr"),
    "backbone_fps_slr_bf16": ("backbone", "slr_bf16"),
    "loader_fps_bare_pyav": ("loader", "bare"),
    "loader_fps_slr": ("loader", "slr"),
}
# ratios over paired repeats (repeat k of the numerator over repeat k of the denominator)
RATIOS = {
    "cache_speedup": ("steps", "cached", "live"),
    "extract_speedup": ("backbone", "slr", "plain"),
    "loader_efficiency": ("loader", "slr", "bare"),
}


def run(cfg: DictConfig) -> dict:
    """Every measure's median (the keys scripts read) plus `spread`: each measure's and each
    ratio's min / median / max and repeats."""
    torch.set_num_threads(torch.get_num_threads())
    rates = {"steps": train_step_rates(cfg), "backbone": backbone_rates(cfg)}
    rates["loader"] = loader_rates(cfg)
    mid = {group: medians(r) for group, r in rates.items()}
    steps, backbone, loader = mid["steps"], mid["backbone"], mid["loader"]
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
    }
    spreads = {}
    for key, (group, name) in MEASURES.items():
        if name in rates[group]:
            result[key] = mid[group][name]
            spreads[key] = spread(rates[group][name])
    for key, (group, num, den) in RATIOS.items():
        result[key] = mid[group][num] / mid[group][den]
        pairs = zip(rates[group][num], rates[group][den], strict=True)
        spreads[key] = spread([a / b for a, b in pairs])
    result["sweep_hours_uncached"] = uncached_h
    result["sweep_hours_cached"] = cached_h
    if "slr_bf16" in backbone:
        result.update(bf16_feature_error(cfg))
    result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    result["repeats"] = {
        "steps": cfg.repeats,
        "backbone": cfg.repeats,
        "loader": cfg.loader_repeats,
    }
    result["spread"] = spreads
    return result


def table(r: dict, cfg: DictConfig) -> str:
    """One row per measure: median, min and max over the repeats, and a note."""
    sweep = f"{cfg.sweep_runs} runs x {cfg.sweep_epochs} epochs, {cfg.sweep_train_clips} clips"
    rows = [
        ("train steps/s, live backbone", "train_steps_per_s_live", ""),
        ("train steps/s, cached features", "train_steps_per_s_cached", ""),
        # information, not a target: a faster live step lowers it (issue 16)
        ("  cache_speedup", "cache_speedup", "cached / live (information)"),
        ("backbone frames/s, plain fp32 NCHW", "backbone_fps_plain", ""),
        ("backbone frames/s, slr extraction", "backbone_fps_slr", ""),
        ("  extract_speedup", "extract_speedup", "target >= 1.7"),
        ("loader frames/s, bare PyAV decode", "loader_fps_bare_pyav", ""),
        ("loader frames/s, slr ClipDataset", "loader_fps_slr", ""),
        ("  loader_efficiency", "loader_efficiency", "target >= 0.8"),
        (f"sweep hours uncached ({sweep})", "sweep_hours_uncached", ""),
        ("sweep hours cached (incl. extraction)", "sweep_hours_cached", ""),
    ]
    if "backbone_fps_slr_bf16" in r:
        rows[5:5] = [
            ("backbone frames/s, slr bf16", "backbone_fps_slr_bf16", ""),
            ("  bf16 feature cosine to fp32, mean", "bf16_cosine_mean", ""),
            ("  bf16 feature cosine to fp32, min", "bf16_cosine_min", ""),
            ("  bf16 feature relative error, mean", "bf16_rel_error_mean", ""),
            ("  bf16 feature relative error, max", "bf16_rel_error_max", ""),
        ]
    shape = r["shape"]
    head = f"B={shape['batch']} T={shape['frames']} {shape['image_size']}px on {r['machine']}"
    lines = [head, f"{'':45} {'median':>10} {'min':>10} {'max':>10}"]
    for name, key, note in rows:
        s = r["spread"].get(key)
        low, high = (f"{s['min']:10.4f}", f"{s['max']:10.4f}") if s else (" " * 10, " " * 10)
        lines.append(f"{name:45} {r[key]:10.4f} {low} {high}  {note}".rstrip())
    return "\n".join(lines)
