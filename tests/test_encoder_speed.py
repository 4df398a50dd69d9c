"""The encoder's speed switches (issue 16): chunks sized by a pixel budget unless chunk_frames
says otherwise, and the ONNX Runtime backbone; none may change the default's features or its
feature-store key. Tiny random-init inputs on the CPU."""

from __future__ import annotations

import pytest
import torch

from slr.data.features import module_digest
from slr.models.encoder import CHUNK_PIXELS, FrameEncoder


def test_chunk_frames_follow_the_pixel_budget_unless_set():
    encoder = FrameEncoder(weights=None)
    assert encoder.chunk_frames is None and encoder.chunk_pixels == CHUNK_PIXELS
    assert encoder.chunk(224, 224, 120) == 8
    assert encoder.chunk(112, 112, 64) == 32
    assert encoder.chunk(2000, 2000, 10) == 1  # never zero
    assert FrameEncoder(weights=None, chunk_pixels=32 * 32 * 3).chunk(32, 32, 10) == 3
    explicit = FrameEncoder(weights=None, chunk_frames=4)  # the public override still wins
    assert explicit.chunk(112, 112, 64) == 4
    assert FrameEncoder(weights=None, chunk_frames=0).chunk(112, 112, 64) == 64  # one call
    with pytest.raises(ValueError, match="chunk_pixels"):
        FrameEncoder(weights=None, chunk_pixels=0)


@pytest.mark.slow
def test_chunking_does_not_change_features_or_the_store_key():
    frames = torch.randint(0, 256, (2, 5, 3, 32, 32), dtype=torch.uint8)
    lengths = torch.tensor([5, 2])
    budget = FrameEncoder(weights=None, chunk_pixels=3 * 32 * 32)  # 3 frames per call
    single = FrameEncoder(weights=None, chunk_frames=0)
    old_default = FrameEncoder(weights=None, chunk_frames=4)
    torch.testing.assert_close(budget(frames, lengths), single(frames, lengths))
    torch.testing.assert_close(budget(frames, lengths), old_default(frames, lengths))
    assert module_digest(budget) == module_digest(single) == module_digest(old_default)
    assert budget.numerics == "bf16=False"  # the default's key is the one stores have today


def test_runtime_is_checked():
    with pytest.raises(ValueError, match="runtime"):
        FrameEncoder(weights=None, runtime="tensorrt")
    with pytest.raises(ValueError, match="bf16"):
        FrameEncoder(weights=None, runtime="onnxruntime", bf16=True)


@pytest.mark.slow
def test_onnxruntime_backbone_matches_torch_and_keys_its_own_store():
    pytest.importorskip("onnxruntime")
    torch_enc = FrameEncoder(weights=None, chunk_frames=3)
    ort_enc = FrameEncoder(weights=None, chunk_frames=3, runtime="onnxruntime")
    for size in (32, 48):  # one exported graph serves every size and chunk
        frames = torch.randint(0, 256, (2, 4, 3, size, size), dtype=torch.uint8)
        lengths = torch.tensor([4, 1])
        expected, got = torch_enc(frames, lengths), ort_enc(frames, lengths)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        assert not got[1, 1:].any()  # padded frames stay zero
    assert not got.is_inference() and got.dtype == torch.float32
    assert ort_enc.numerics == "bf16=False;runtime=onnxruntime"
    assert module_digest(ort_enc) != module_digest(torch_enc)
    grid = FrameEncoder(weights=None, runtime="onnxruntime", pool_grid=2)
    torch.testing.assert_close(
        grid(frames), FrameEncoder(weights=None, pool_grid=2)(frames), rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow
def test_onnxruntime_session_follows_new_weights():
    pytest.importorskip("onnxruntime")
    encoder = FrameEncoder(weights=None, runtime="onnxruntime")
    other = FrameEncoder(weights=None, init_seed=1)
    frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    before = encoder(frames)
    encoder.load_state_dict(other.state_dict())
    after = encoder(frames)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, other(frames), rtol=1e-4, atol=1e-5)
