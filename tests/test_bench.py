"""slr.bench peer=keras: the statistics, the config, the error without the peer extra, the worker
processes, and the Keras network against slr's (skipped without TensorFlow). No timing asserts."""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest
import torch
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.peers import compare

CASES = {
    "train_224": {"kind": "train", "batch": 4, "frames": 30, "image_size": 224},
    "infer_b1": {"kind": "infer", "batch": 1, "frames": 30, "image_size": 224},
    "cached": {"kind": "cached", "batch": 4, "frames": 30, "image_size": None},
}
TARGETS = {"live": 1.2, "cached_vs_live": 30}


def compose_bench(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose(config_name="bench", overrides=overrides)
    GlobalHydra.instance().clear()
    return cfg


def test_medians_ratios_and_targets():
    rates = {
        "train_224": {"slr": [1.0, 3.0, 2.0], "keras2": [1.0, 0.9, 5.0], "keras3": [0.5, 1.5, 1.2]},
        "infer_b1": {"slr": [4.0, 4.0, 4.0], "keras2": [4.0, 4.0, 4.0], "keras3": [1.0, 1.0, 1.0]},
        "cached": {"slr": [40.0, 50.0, 60.0], "keras2": [8.0, 8.0, 8.0], "keras3": [9.0, 9, 9]},
    }
    out = compare.summarize(rates, CASES, ["keras2", "keras3"], TARGETS)
    train = {"unit": "steps/s", "slr": 2.0, "keras2": 1.0, "keras3": 1.2}
    assert out["cases"]["train_224"] == train
    assert out["cases"]["infer_b1"]["unit"] == "clips/s"
    r = out["ratios"]
    assert r["train_224"] == {
        "keras2": 2.0,
        "keras3": pytest.approx(1.667, abs=1e-3),
        "best": pytest.approx(1.667, abs=1e-3),
    }  # best = fastest peer
    assert r["infer_b1"]["best"] == 1.0
    assert r["cached"]["best"] == pytest.approx(50 / 9, abs=1e-3)
    # cached steps against each peer's live train_224 steps
    assert r["cached_vs_live"] == {
        "keras2": 50.0,
        "keras3": pytest.approx(41.667, abs=1e-3),
        "best": pytest.approx(41.667, abs=1e-3),
    }
    assert out["targets_met"] == {"train_224": True, "infer_b1": False, "cached_vs_live": True}
    # every repeat's spread, and slr / fastest peer round by round
    assert out["spread"]["train_224"]["keras2"] == {
        "min": 0.9,
        "median": 1.0,
        "max": 5.0,
        "repeats": [1.0, 0.9, 5.0],
    }
    rounds = out["ratio_spread"]["train_224"]  # 1/1.0, 3/1.5, 2/5.0
    assert rounds["repeats"] == [1.0, 2.0, 0.4]
    assert (rounds["min"], rounds["median"], rounds["max"]) == (0.4, 1.0, 2.0)
    # cached repeat k over the fastest peer's live train repeat k: 40/1, 50/1.5, 60/5
    assert out["ratio_spread"]["cached_vs_live"]["repeats"] == [40.0, 33.333, 12.0]


def test_table_shows_every_rate_ratio_and_verdict():
    rates = {c: {"slr": [2.0], "keras2": [1.0], "keras3": [4.0]} for c in CASES}
    result = {
        "machine": "test cpu, 2 cores, 2 threads",
        "implementations": {"slr": "torch", "keras2": "tf-keras", "keras3": "keras"},
        **compare.summarize(rates, CASES, ["keras2", "keras3"], TARGETS),
    }
    text = compare.table(result, CASES)
    assert "test cpu" in text
    lines = {line.split("  ")[0].strip(): line for line in text.splitlines()}
    train = lines["train B=4 T=30 224px"]
    assert "2.000" in train and "1.000" in train and "4.000" in train
    assert "2.00" in train and "0.50" in train and "MISSED" in train
    assert "features" in text and "slr cached / peer live train" in text
    assert "repeats: slr 2.000 | keras2 1.000 | keras3 4.000" in text
    assert "slr/best per round 0.50 (min 0.50, max 0.50)" in text


def test_local_table_states_spread_and_cache_speedup_is_no_target():
    from slr.benchmarks import local
    from slr.benchmarks.timing import spread

    cfg = OmegaConf.create({"sweep_runs": 4, "sweep_epochs": 30, "sweep_train_clips": 10})
    keys = [*local.MEASURES, *local.RATIOS, "sweep_hours_uncached", "sweep_hours_cached"]
    result = {k: 1.0 for k in keys if k != "backbone_fps_slr_bf16"}
    result["shape"] = {"batch": 4, "frames": 30, "image_size": 224}
    result["machine"] = "test cpu"
    result["spread"] = {k: spread([0.5, 1.0, 1.5]) for k in result if k in local.MEASURES}
    result["spread"]["cache_speedup"] = spread([20.0, 25.0, 40.0])
    text = local.table(result, cfg)
    lines = {line.strip().split("  ")[0]: line for line in text.splitlines()}
    speedup = lines["cache_speedup"]
    assert "target" not in speedup and "information" in speedup
    assert "20.0000" in speedup and "40.0000" in speedup  # min and max
    assert "0.5000" in lines["train steps/s, live backbone"]
    assert "target >= 1.7" in lines["extract_speedup"]


def test_alternate_keeps_every_repeat_in_order():
    from slr.benchmarks.timing import alternate, spread

    calls = []

    def rate(name, values):
        it = iter(values)
        return lambda: calls.append(name) or next(it)

    rates = alternate({"a": rate("a", [9, 1, 2, 3]), "b": rate("b", [9, 5, 4, 6])}, 3)
    assert rates == {"a": [1, 2, 3], "b": [5, 4, 6]}  # the warm-up call is not kept
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]  # interleaved
    assert spread(rates["b"]) == {"min": 4, "median": 5, "max": 6, "repeats": [5, 4, 6]}


def test_bench_config_composes_with_peer_keras():
    default = compose_bench([])
    assert default.get("peer") is None  # plain `python -m slr.bench` is unchanged
    cfg = compose_bench(["peer=keras", "peer.repeats=5"])
    peer = OmegaConf.to_container(cfg.peer, resolve=True)
    assert peer["repeats"] == 5 and peer["threads"] == 2
    shapes = {
        c: (s["kind"], s["batch"], s["frames"], s["image_size"]) for c, s in peer["cases"].items()
    }
    assert shapes == {
        "train_224": ("train", 4, 30, 224),
        "train_112": ("train", 4, 16, 112),
        "infer_b1": ("infer", 1, 30, 224),
        "infer_b4": ("infer", 4, 30, 224),
        "cached": ("cached", 4, 30, None),
    }
    frameworks = {n: i["framework"] for n, i in peer["implementations"].items()}
    assert frameworks == {"slr": "slr", "keras2": "keras2", "keras3": "keras3"}
    # every key of conf/peer/keras.yaml is a parameter of compare() (slr.bench passes them all)
    params = inspect.signature(compare.compare).parameters
    assert set(peer) <= set(params) - {"log_dir"}
    required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
    assert required <= set(peer)


def test_missing_peer_extra_fails_clearly_before_starting_anything(monkeypatch, tmp_path):
    monkeypatch.setitem(compare.MODULES, "keras2", ("tensorflow", "surely_not_installed_xyz"))
    started = []
    monkeypatch.setattr(compare, "Worker", lambda *a, **k: started.append(a))
    peer = OmegaConf.to_container(compose_bench(["peer=keras"]).peer)
    with pytest.raises(compare.PeerError, match=r'pip install -e "\.\[peer\]"') as err:
        compare.compare(**peer, log_dir=str(tmp_path))
    assert "surely_not_installed_xyz" in str(err.value)
    assert not started


def test_onnxruntime_option_needs_onnxruntime(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    monkeypatch.setattr(compare, "require_modules", lambda *a: None)
    monkeypatch.setattr(compare, "Worker", lambda *a, **k: pytest.fail("started"))
    impls = {"slr": {"framework": "slr", "options": {"runtime": "onnxruntime"}}}
    with pytest.raises(compare.PeerError, match="needs onnxruntime"):
        compare.compare(impls, CASES, {}, TARGETS, log_dir=str(tmp_path))


@pytest.mark.slow
def test_workers_time_every_case_round_robin(tmp_path):
    """The whole protocol on two slr workers (no TensorFlow needed): one plays the peer."""
    cases = {
        "train_224": {"kind": "train", "batch": 2, "frames": 2, "image_size": 32},
        "infer_b1": {"kind": "infer", "batch": 1, "frames": 2, "image_size": 32},
        "cached": {"kind": "cached", "batch": 2, "frames": 2, "image_size": None},
    }
    impls = {
        "slr": {"framework": "slr", "options": {"chunk_frames": 2}},
        "twin": {"framework": "slr", "options": {"chunk_frames": 0}},
    }
    arch = {"num_classes": 5, "lstm_hidden": 8}
    result = compare.compare(
        impls,
        cases,
        arch,
        TARGETS,
        threads=1,
        repeats=2,
        warmup=1,
        min_seconds=0.0,
        log_dir=str(tmp_path),
    )
    assert set(result["implementations"]) == {"slr", "twin"}
    for case in cases:
        assert all(len(r) == 2 and min(r) > 0 for r in result["rates"][case].values())
        assert result["ratios"][case]["twin"] > 0
    assert set(result["targets_met"]) == {"train_224", "infer_b1", "cached_vs_live"}


@pytest.mark.slow
def test_failing_worker_reports_its_error(tmp_path):
    cases = {"t": {"kind": "train", "batch": 1, "frames": 1, "image_size": 32}}
    impls = {
        "slr": {"framework": "slr", "options": {"no_such_option": 1}},
        "twin": {"framework": "slr"},
    }
    with pytest.raises(compare.PeerError, match="no_such_option"):
        compare.compare(
            impls,
            cases,
            {"num_classes": 3, "lstm_hidden": 4},
            TARGETS,
            threads=1,
            warmup=0,
            log_dir=str(tmp_path),
        )


def keras_flavors():
    if importlib.util.find_spec("tensorflow") is None:
        return [
            pytest.param(
                None,
                marks=pytest.mark.skip(
                    reason='tensorflow not installed (optional: pip install -e ".[peer]")'
                ),
            )
        ]
    return ["tf_keras", "keras"]


@pytest.fixture(params=keras_flavors())
def keras(request):
    """Keras 2 (tf-keras) and Keras 3, each imported directly."""
    module = pytest.importorskip(request.param)
    if request.param == "keras" and not module.__version__.startswith("3"):
        pytest.skip(f"keras {module.__version__} is not Keras 3")
    return module


def torch_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def keras_params(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, True)])
def test_keras_network_matches_slr(keras, layers, bidirectional):
    from slr.peers.keras_net import build_classifier

    sizes = dict(num_classes=7, lstm_hidden=16, lstm_layers=layers, bidirectional=bidirectional)
    ours = SignClassifier(backbone=FrameEncoder(weights=None), **sizes)
    theirs = build_classifier(keras, frames=3, image_size=32, **sizes)
    assert tuple(theirs.output_shape) == (None, 7)
    logits = theirs.predict_on_batch(np.random.uniform(-1, 1, (2, 3, 32, 32, 3)).astype("f4"))
    assert logits.shape == (2, 7)

    by_type = {type(layer).__name__: layer for layer in theirs.layers}
    # the frozen backbone: same convolutions and BatchNorm scales; Keras counts BatchNorm's
    # moving mean and variance as (non-trainable) weights, torch keeps them as buffers
    backbone = next(
        layer
        for layer in theirs.layers
        if "mobilenet" in layer.name.lower() or "time_distributed" in layer.name
    )
    assert keras_params(backbone.trainable_weights) == 0
    running = sum(b.numel() for n, b in ours.encoder.backbone.named_buffers() if "running" in n)
    assert keras_params(backbone.weights) == torch_params(ours.encoder.backbone) + running
    # LSTM: torch keeps two bias vectors per gate block (b_ih, b_hh), Keras one
    lstm_keras = sum(
        keras_params(layer.weights)
        for layer in theirs.layers
        if type(layer).__name__ in ("LSTM", "Bidirectional")
    )
    directions = 2 if bidirectional else 1
    assert lstm_keras == torch_params(ours.lstm) - 4 * 16 * layers * directions
    assert keras_params(by_type["Dense"].weights) == torch_params(ours.head)
    assert keras_params(by_type["BatchNormalization"].trainable_weights) == torch_params(
        ours.feature_norm
    )
    trainable = torch_params(ours) - torch_params(ours.encoder)
    assert keras_params(theirs.trainable_weights) == trainable - 4 * 16 * layers * directions


def test_keras_reshape_fold_equals_time_distributed(keras):
    from slr.peers.keras_net import build_classifier

    sizes = dict(num_classes=5, lstm_hidden=8, frames=3, image_size=32)
    distributed = build_classifier(keras, **sizes)
    folded = build_classifier(keras, fold="reshape", **sizes)
    folded.set_weights(distributed.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32, 3)).astype("f4")
    np.testing.assert_allclose(
        folded.predict_on_batch(x), distributed.predict_on_batch(x), rtol=1e-4, atol=1e-5
    )
    with pytest.raises(ValueError, match="fold"):
        build_classifier(keras, fold="loop", **sizes)


def test_worker_rejects_unknown_framework():
    from slr.peers.worker import make_backend

    with pytest.raises(ValueError, match="expected one of"):
        make_backend("jax", 1)
