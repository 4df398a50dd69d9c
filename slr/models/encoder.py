"""The frozen per-frame encoder: MobileNetV2 features + global average pooling, applied to every
frame of a clip by folding time into the batch (PyTorch's form of Keras' TimeDistributed)."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from slr.data.transforms import IMAGENET_MEAN, IMAGENET_STD

FEATURE_DIM = 1280
# pixels per backbone call when chunk_frames is not set: 8 frames at 224 px, 32 at 112 px. A call
# has a fixed cost (oneDNN dispatch, the trace's bookkeeping) that small frames do not amortize,
# and large calls spill activations out of cache; measured on a 2-core CPU (experiments/speed)
CHUNK_PIXELS = 8 * 224 * 224
RUNTIMES = ("torch", "onnxruntime")


class WeightsError(RuntimeError):
    """Backbone weights that were asked for but cannot be had."""


def load_backbone(
    weights: str | None, weights_path: str | None = None, init_seed: int = 0
) -> nn.Sequential:
    """MobileNetV2's `features` with the requested weights.

    Args:
        weights: a torchvision weights name (IMAGENET1K_V1, IMAGENET1K_V2) or None for random init
            (with BatchNorm statistics calibrated on noise, see `calibrate_batchnorm`).
        weights_path: a local state-dict file (of the whole MobileNetV2 or just `features`); wins
            over `weights`. Raises WeightsError instead of ever falling back to random weights.
        init_seed: seeds the random init, so a random backbone is the same in every run (and its
            cached features can be shared) whatever the run's seed.
    """
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        net = mobilenet_v2(weights=None)
    if weights_path is not None:
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as e:  # missing file, not a torch file, unpickling refused: all fatal
            raise WeightsError(
                f"model.backbone.weights_path={weights_path} could not be read as a state dict: {e}"
            ) from e
        state = {k.removeprefix("features."): v for k, v in state.items() if "classifier" not in k}
        try:
            net.features.load_state_dict(state)
        except RuntimeError as e:
            raise WeightsError(
                f"model.backbone.weights_path={weights_path} is not a MobileNetV2 state dict: {e}"
            ) from e
    elif weights is not None:
        try:
            spec = MobileNet_V2_Weights[weights]
        except KeyError:
            names = [w.name for w in MobileNet_V2_Weights]
            raise WeightsError(
                f"model.backbone.weights={weights} is not one of {names} (or null for random init)"
            ) from None
        try:
            net.load_state_dict(spec.get_state_dict(progress=False, check_hash=True))
        except Exception as e:  # no network, no cache, bad cache: all end the same way
            cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(spec.url)
            torch_home = os.environ.get("TORCH_HOME", "unset")
            raise WeightsError(
                f"could not load MobileNetV2 {weights} weights ({type(e).__name__}: {e}). "
                f"torchvision looks for {cache} (TORCH_HOME={torch_home}) and downloads "
                f"{spec.url} when it is absent. Offline, copy that file there, or set "
                "model.backbone.weights_path=/path/to/state_dict.pth."
            ) from e
    else:
        calibrate_batchnorm(net.features)
    return net.features


@torch.no_grad()
def calibrate_batchnorm(features: nn.Module, seed: int = 0) -> None:
    """Rescale a randomly initialised network's BatchNorm layers so activations keep unit scale.

    Fresh BatchNorm layers hold mean 0 / variance 1, under which MobileNetV2's activations shrink
    ~10x per stage to ~1e-10 at the output: frozen in eval mode, every frame would map to ~zero.
    One pass of Gaussian noise sets each layer's variance to one number, the mean square of its
    input, and its mean to 0. Per-channel statistics would also work against the vanishing, but
    they make the random network chaotic (a 1-pixel shift changed features by ~55%, against ~13%
    with identity BatchNorm); one scale per layer keeps identity BatchNorm's function, up to scale.
    """
    norms = [m for m in features.modules() if isinstance(m, nn.BatchNorm2d)]

    def rescale(norm: nn.BatchNorm2d, inputs: tuple[torch.Tensor]) -> None:
        norm.running_mean.zero_()
        norm.running_var.fill_(inputs[0].pow(2).mean().item())

    # the hooks run in forward order, so each layer sees its input already rescaled upstream
    hooks = [m.register_forward_pre_hook(rescale) for m in norms]
    noise = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    features.eval()(noise)
    for hook in hooks:
        hook.remove()


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of an eval-mode network in which every BatchNorm2d that directly follows a Conv2d
    (in a Sequential, as everywhere in MobileNetV2) is folded into that conv's weight and bias:
    the same function up to float rounding, one pass over each activation fewer."""
    net = copy.deepcopy(net)
    for seq in net.modules():
        if isinstance(seq, nn.Sequential):
            for i in range(len(seq) - 1):
                if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                    seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                    seq[i + 1] = nn.Identity()
    return net.to(memory_format=torch.channels_last)


class FrameEncoder(nn.Module):
    """Frozen MobileNetV2 over every real frame of a clip: (B, T, 3, H, W) -> (B, T, 1280).

    Frames are RGB in 0..255 (uint8 from the loader, or any float tensor on that scale); the
    encoder applies ImageNet mean/std itself, chunk by chunk, so no full-size float copy of a
    batch ever exists.

    Frozen means: no parameter requires grad, the forward runs in inference mode, and the module
    stays in eval mode whatever `.train()` says, so BatchNorm statistics never move.

    Args:
        weights, weights_path, init_seed: see `load_backbone`.
        chunk_frames: frames per backbone call; None (the default) = as many as fit in
            `chunk_pixels`; 0 = every frame in one call. Small chunks keep activations small
            enough to be reused by the allocator instead of page-faulting hundreds of MB per call.
        chunk_pixels: the pixel budget per call when chunk_frames is None (H * W * frames), so
            small frames go through in larger chunks (a call's fixed cost dominates at 112 px).
        bf16: run the backbone under bfloat16 autocast (fast on GPUs and AMX CPUs); features stay
            float32. See README for its measured effect on features.
        cpu_jit: on the CPU, run the folded backbone as a frozen TorchScript trace optimized for
            inference (oneDNN convolutions with ReLU6 fused in): 1.26x the eager folded backbone
            at 224 px on a 2-core CPU, features equal up to float rounding.
        pool_grid: 1 = global average pooling of the last feature map (1280 values per frame);
            g > 1 = average pooling over a g x g grid of it (g*g*1280 values, channel-major), which
            keeps where in the frame (which hand, how high) the activity is.
        trainable_blocks: 0 = all frozen (the seed design); K = the last K blocks of MobileNetV2's
            `features` (its final 1x1 conv counting as one) are fine-tuned, the rest stays
            frozen. With cached features the store then holds the frozen prefix's output (see
            `store_encoder`) and training runs only the tail (`from_prefix`).
        tail_batchnorm: the tuned blocks' BatchNorm: "eval" (running statistics kept, the
            default) or "train" (batch statistics, updated while fitting).
        tune_lr: the tuned blocks' learning rate; None = the optimizer's.
        runtime: "torch" (the default) or "onnxruntime": on the CPU, the folded backbone and its
            pooling exported to ONNX and run by ONNX Runtime (needs the `onnx` extra). Float32
            like torch, features within 1e-6 relative of torch's (tests: 1e-4/1e-5 tolerance).
            Its work-sharing thread pool keeps its speed when another process takes a core,
            where torch's two OpenMP threads collapse (experiments/speed). It is part of
            `numerics`, so its features get their own store. Off the CPU (a GPU) the torch
            path runs whatever this says.
    """

    def __init__(
        self,
        weights: str | None = "IMAGENET1K_V1",
        weights_path: str | None = None,
        chunk_frames: int | None = None,
        init_seed: int = 0,
        bf16: bool = False,
        cpu_jit: bool = True,
        pool_grid: int = 1,
        trainable_blocks: int = 0,
        tail_batchnorm: str = "eval",
        tune_lr: float | None = None,
        chunk_pixels: int = CHUNK_PIXELS,
        runtime: str = "torch",
    ) -> None:
        super().__init__()
        if pool_grid < 1:
            raise ValueError(f"model.backbone.pool_grid={pool_grid}: use 1 (global) or more")
        if runtime not in RUNTIMES:
            raise ValueError(f"model.backbone.runtime={runtime!r}: use one of {list(RUNTIMES)}")
        if runtime != "torch" and bf16:
            raise ValueError(f"model.backbone.runtime={runtime} runs float32: set bf16=false")
        if chunk_pixels < 1:
            raise ValueError(f"model.backbone.chunk_pixels={chunk_pixels}: must be positive")
        backbone = load_backbone(weights, weights_path, init_seed)
        if not 0 <= trainable_blocks <= len(backbone):
            raise ValueError(
                f"model.backbone.trainable_blocks={trainable_blocks}: use 0 (frozen) to "
                f"{len(backbone)} (MobileNetV2's features has {len(backbone)} blocks)"
            )
        if tail_batchnorm not in ("eval", "train"):
            raise ValueError(f"model.backbone.tail_batchnorm={tail_batchnorm!r}: eval or train")
        self.backbone = backbone.to(memory_format=torch.channels_last)
        self.backbone.requires_grad_(False)
        self.trainable_blocks = trainable_blocks
        self.split = len(backbone) - trainable_blocks  # blocks [split:] are tuned
        self.tail_batchnorm = tail_batchnorm
        self.tune_lr = tune_lr
        self.backbone[self.split :].requires_grad_(True)
        self.chunk_frames = chunk_frames
        self.chunk_pixels = chunk_pixels
        self.runtime = runtime
        self.bf16 = bf16
        self.cpu_jit = cpu_jit
        self.pool_grid = pool_grid
        self.out_dim = FEATURE_DIM * pool_grid * pool_grid
        # ImageNet mean/std on the 0..255 scale; not saved, so they are never stale in a checkpoint
        mean, std = torch.tensor(IMAGENET_MEAN) * 255, torch.tensor(IMAGENET_STD) * 255
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> FrameEncoder:
        super().train(False)  # frozen BatchNorm: always eval
        if mode and self.trainable_blocks and self.tail_batchnorm == "train":
            self.backbone[self.split :].train()
        return self

    def tuned_parameters(self) -> list[nn.Parameter]:
        """The fine-tuned blocks' parameters (none when trainable_blocks is 0)."""
        return list(self.backbone[self.split :].parameters()) if self.trainable_blocks else []

    def folded(self) -> nn.Module:
        """The backbone with BatchNorm folded into the convolutions, the one forward runs
        (1.8x faster on a 2-core CPU at 224 px). `self.backbone` stays the saved, loaded and
        hashed module; the folded copy is rebuilt whenever any of its tensors was replaced,
        moved or changed in place (load_state_dict, .to(), ...)."""
        tensors = [*self.backbone.parameters(), *self.backbone.buffers()]
        # inference tensors (a module built under inference mode) keep no version counter
        key = tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in tensors)
        cached = self.__dict__.get("_folded")  # a plain attribute: not a submodule, not saved
        if cached is None or cached[0] != key:
            cached = (key, fold_batchnorm(self.backbone))
            self.__dict__["_folded"] = cached
        return cached[1]

    def runner(self, device: torch.device) -> nn.Module:
        """The module forward runs on `device`: the folded backbone, or on the CPU (unless
        cpu_jit or bf16 says otherwise) its frozen, inference-optimized trace. The trace is
        shape-generic (convolutions only), so one serves every chunk and image size."""
        folded = self.folded()
        if self.runtime == "onnxruntime" and device.type == "cpu":
            return self._ort(folded)
        fast_cpu = self.cpu_jit and not self.bf16 and torch.backends.mkldnn.is_available()
        if device.type != "cpu" or not fast_cpu:
            return folded
        cached = self.__dict__.get("_jit")
        if cached is None or cached[0] is not folded:
            sample = torch.zeros(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notice
                traced = torch.jit.trace(folded, sample)
                cached = (folded, torch.jit.optimize_for_inference(torch.jit.freeze(traced)))
            self.__dict__["_jit"] = cached
        return cached[1]

    def _ort(self, folded: nn.Module):
        """The ONNX Runtime session of the folded backbone + pooling, built once per folded copy
        (so new weights export again)."""
        cached = self.__dict__.get("_ort_session")
        if cached is None or cached[0] is not folded:
            from slr.models.ort_backbone import OrtBackbone

            cached = (folded, OrtBackbone(folded, self.pool_grid))
            self.__dict__["_ort_session"] = cached
        return cached[1]

    def chunk(self, height: int, width: int, frames: int) -> int:
        """Frames per backbone call for `frames` frames of this size (at least 1)."""
        return chunk_size(self.chunk_frames, self.chunk_pixels, height, width, frames)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """(n, 1280, h, w) feature maps -> (n, out_dim) frame features."""
        if self.pool_grid == 1:
            return maps.mean(dim=(2, 3))  # (n, 1280, h, w) -> (n, 1280)
        grid = nn.functional.adaptive_avg_pool2d(maps, self.pool_grid)  # (n, 1280, g, g)
        return grid.flatten(1)  # (n, 1280, g, g) -> (n, 1280 * g * g)

    def store_encoder(self) -> nn.Module:
        """What a feature store holds for this encoder: its output, or with tuned blocks the
        frozen prefix's activation maps (flattened per frame), so training runs only the tail."""
        return self.prefix_encoder() if self.trainable_blocks else self

    def prefix_encoder(self) -> PrefixEncoder:
        """The frozen blocks before the tuned ones (BatchNorm folded), rebuilt only when one of
        their tensors changed (load_state_dict, .to(), ...), not when the tail trains."""
        tensors = [
            *self.backbone[: self.split].parameters(),
            *self.backbone[: self.split].buffers(),
        ]
        key = tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in tensors)
        cached = self.__dict__.get("_prefix")
        if cached is None or cached[0] != key:
            cached = (key, PrefixEncoder(self))
            self.__dict__["_prefix"] = cached
        return cached[1]

    def from_prefix(self, maps: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C*h*w) stored prefix maps (see `PrefixEncoder`) -> (B, T, out_dim) features,
        through the tuned blocks (with grad while training); padded frames get zeros."""
        b, t = maps.shape[:2]
        channels = prefix_channels(self.backbone, self.split)
        side = round((maps.shape[2] // channels) ** 0.5)
        real = _real_rows(b, t, lengths, maps.device)
        x = maps.flatten(0, 1)[real].float()  # (B, T, C*h*w) -> (n, C*h*w), real frames only
        x = x.view(len(real), channels, side, side).contiguous(memory_format=torch.channels_last)
        y = self.pool(self.backbone[self.split :](x))  # (n, C, h, w) -> (n, out_dim)
        out = y.new_zeros(b * t, self.out_dim).index_copy(0, real, y)  # (B*T, out_dim)
        return out.view(b, t, self.out_dim)  # (B*T, out_dim) -> (B, T, out_dim)

    def _tuned_forward(self, frames: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """forward while the tail trains: the frozen prefix as stored, then `from_prefix`."""
        with torch.inference_mode():
            maps = self.prefix_encoder()(frames, lengths)  # (B, T, C*h*w)
        return self.from_prefix(maps.clone(), lengths)  # a normal tensor again, for autograd

    @property
    def numerics(self) -> str:
        """What, besides the weights, changes the features: part of a feature store's key."""
        spec = f"bf16={self.bf16}"  # the default's string, unchanged since stores were keyed
        if self.pool_grid != 1:
            spec += f";pool_grid={self.pool_grid}"
        if self.runtime != "torch":
            spec += f";runtime={self.runtime}"
        return spec

    def __getstate__(self) -> dict:
        # copies and pickles (deepcopy, DDP spawn) rebuild the fast paths on first use
        hidden = ("_folded", "_jit", "_prefix", "_ort_session")  # ORT sessions do not pickle
        return {k: v for k, v in self.__dict__.items() if k not in hidden}

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features of the real frames; padded frames (t >= length) get zeros and cost nothing."""
        if self.trainable_blocks and torch.is_grad_enabled():
            return self._tuned_forward(frames, lengths)
        b, t = frames.shape[:2]
        # allocated outside inference mode: a normal tensor, which training may save for backward
        out = torch.zeros(b * t, self.out_dim, device=frames.device)  # (B*T, 1280)
        backbone = self.runner(frames.device)
        with torch.inference_mode():
            flat = frames.flatten(0, 1)  # (B, T, 3, H, W) -> (B*T, 3, H, W)
            if lengths is None:
                real = torch.arange(b * t, device=frames.device)
            else:
                mask = torch.arange(t, device=frames.device) < lengths.to(frames.device)[:, None]
                real = mask.flatten().nonzero().squeeze(1)  # (B, T) -> indices into B*T
            step = self.chunk(*frames.shape[-2:], len(real))
            pooled = getattr(backbone, "pools", False)  # ONNX Runtime's graph pools itself
            layout = torch.contiguous_format if pooled else torch.channels_last
            autocast = torch.autocast(frames.device.type, torch.bfloat16, enabled=self.bf16)
            for i in range(0, len(real), step):
                rows = real[i : i + step]
                x = flat[rows].float().contiguous(memory_format=layout)  # (n, 3, H, W)
                x = x.sub_(self.mean).div_(self.std)
                with autocast:
                    y = backbone(x) if pooled else self.pool(backbone(x))  # (n, out_dim)
                out[rows] = y.float()
        return out.view(b, t, self.out_dim)  # (B*T, 1280) -> (B, T, 1280)


def chunk_size(
    chunk_frames: int | None, chunk_pixels: int, height: int, width: int, frames: int
) -> int:
    """Frames per backbone call: `chunk_frames` when set (0 = all `frames` at once), else as many
    frames of height x width as fit in `chunk_pixels`; at least 1."""
    if chunk_frames is not None:
        return chunk_frames if chunk_frames > 0 else max(frames, 1)
    return max(1, chunk_pixels // (height * width))


def _real_rows(b: int, t: int, lengths: torch.Tensor | None, device) -> torch.Tensor:
    """Indices into B*T of the real frames (t < length; all of them without lengths)."""
    if lengths is None:
        return torch.arange(b * t, device=device)
    mask = torch.arange(t, device=device) < lengths.to(device)[:, None]  # (B, T)
    return mask.flatten().nonzero().squeeze(1)


def prefix_channels(backbone: nn.Sequential, split: int) -> int:
    """Channels of the activation map entering block `split` of MobileNetV2's features."""
    for module in reversed(list(backbone[:split].modules())):
        if isinstance(module, nn.Conv2d):
            return module.out_channels
    raise ValueError(f"no convolution before block {split}")


class PrefixEncoder(nn.Module):
    """The frozen blocks before an encoder's tuned ones, as a feature-store encoder:
    (B, T, 3, S, S) frames -> (B, T, C*h*w) activation maps, flattened channel-major, zeros for
    padded frames. Its parameters are the prefix's only, so its store key does not move while
    the tail trains; `numerics` names where the prefix ends."""

    def __init__(self, encoder: FrameEncoder) -> None:
        super().__init__()
        self.prefix = fold_batchnorm(encoder.backbone[: encoder.split]).requires_grad_(False)
        self.chunk_frames, self.chunk_pixels = encoder.chunk_frames, encoder.chunk_pixels
        self.bf16 = encoder.bf16
        self.numerics = f"bf16={encoder.bf16};prefix={encoder.split}"
        self.register_buffer("mean", encoder.mean, persistent=False)
        self.register_buffer("std", encoder.std, persistent=False)

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)  # (B, T, 3, H, W) -> (B*T, 3, H, W)
        real = _real_rows(b, t, lengths, frames.device)
        step = chunk_size(self.chunk_frames, self.chunk_pixels, *frames.shape[-2:], len(real))
        autocast = torch.autocast(frames.device.type, torch.bfloat16, enabled=self.bf16)
        out = None
        for i in range(0, len(real), step):
            rows = real[i : i + step]
            x = flat[rows].float().contiguous(memory_format=torch.channels_last)  # (n, 3, H, W)
            x = x.sub_(self.mean).div_(self.std)
            with autocast:
                y = self.prefix(x).float().flatten(1)  # (n, C, h, w) -> (n, C*h*w)
            if out is None:
                out = torch.zeros(b * t, y.shape[1], device=frames.device)  # (B*T, C*h*w)
            out[rows] = y
        if out is None:  # no real frame at all
            out = torch.zeros(b * t, 0, device=frames.device)
        return out.view(b, t, -1)  # (B*T, C*h*w) -> (B, T, C*h*w)
