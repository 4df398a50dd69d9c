"""The frame encoder's fast path: BatchNorm folded into a private copy of the backbone, run in
inference mode, without changing what is saved, loaded or trained."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slr.models.encoder import FrameEncoder, fold_batchnorm


def reference(encoder: FrameEncoder, frames: torch.Tensor) -> torch.Tensor:
    """The registered (unfolded) backbone over all frames in one call: (B, T, 1280)."""
    b, t = frames.shape[:2]
    x = (frames.flatten(0, 1).float() - encoder.mean) / encoder.std  # (B*T, 3, S, S)
    with torch.no_grad():
        return encoder.backbone(x).mean(dim=(2, 3)).view(b, t, -1)


def test_folded_backbone_computes_the_same_features():
    encoder = FrameEncoder(weights=None)
    frames = torch.randint(0, 256, (2, 3, 3, 48, 48), dtype=torch.uint8)
    torch.testing.assert_close(encoder(frames), reference(encoder, frames), rtol=1e-4, atol=1e-5)
    folded = encoder.folded()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in encoder.backbone.modules()) == 52


def test_folding_leaves_state_dict_and_parameters_alone():
    encoder = FrameEncoder(weights=None)
    keys = set(encoder.state_dict())
    encoder(torch.zeros(1, 2, 3, 32, 32))
    assert set(encoder.state_dict()) == keys  # the folded copy is not saved
    assert not any("folded" in name for name, _ in encoder.named_modules())
    assert not any(p.requires_grad for p in encoder.parameters())


@pytest.mark.slow
def test_folded_copy_follows_new_weights():
    encoder, other = FrameEncoder(weights=None), FrameEncoder(weights=None, init_seed=1)
    frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    before = encoder(frames)
    encoder.load_state_dict(other.state_dict())  # as a checkpoint load does
    torch.testing.assert_close(encoder(frames), other(frames))
    assert not torch.allclose(encoder(frames), before)
    with torch.no_grad():
        encoder.backbone[-1][0].weight.mul_(2)  # in place
    torch.testing.assert_close(encoder(frames), reference(encoder, frames), rtol=1e-4, atol=1e-5)


def test_features_are_normal_tensors_for_training():
    """The backbone runs in inference mode, but its output feeds autograd (LSTM, BatchNorm1d)."""
    encoder = FrameEncoder(weights=None)
    out = encoder(torch.zeros(2, 2, 3, 32, 32))
    assert not out.is_inference() and not out.requires_grad
    norm = nn.BatchNorm1d(1280)
    norm(out.flatten(0, 1)).sum().backward()  # saving `out` for backward must work
    assert norm.weight.grad is not None


def test_fold_batchnorm_keeps_the_original():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    net[1].running_mean.uniform_()
    net[1].running_var.uniform_(0.5, 2)
    folded = fold_batchnorm(net)
    assert isinstance(net[1], nn.BatchNorm2d) and isinstance(folded[1], nn.Identity)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-5)


def test_encoder_built_under_inference_mode():
    with torch.inference_mode():
        encoder = FrameEncoder(weights=None)
        frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
        expected = reference(encoder, frames)
        torch.testing.assert_close(encoder(frames), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cpu_trace_matches_the_eager_backbone_and_survives_copies():
    """cpu_jit runs a frozen TorchScript trace; it must give the eager features at every chunk
    and image size, and copies (deepcopy, pickle) must rebuild it rather than carry it along."""
    import copy

    encoder = FrameEncoder(weights=None, chunk_frames=3)
    assert isinstance(encoder.runner(torch.device("cpu")), torch.jit.ScriptModule)
    for size in (32, 48):
        frames = torch.randint(0, 256, (2, 4, 3, size, size), dtype=torch.uint8)
        lengths = torch.tensor([4, 1])
        fast = encoder(frames, lengths)
        encoder.cpu_jit = False
        torch.testing.assert_close(fast, encoder(frames, lengths), rtol=1e-4, atol=1e-5)
        encoder.cpu_jit = True
    clone = copy.deepcopy(encoder)
    assert "_jit" not in clone.__dict__
    torch.testing.assert_close(clone(frames, lengths), fast)
