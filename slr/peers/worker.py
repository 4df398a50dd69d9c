"""One implementation of the network in its own process, timed on request:
`python -m slr.peers.worker {slr|keras2|keras3} THREADS`, driven by `slr.bench peer=...`.

It reads one JSON request per line on stdin and answers one JSON line on stdout:
  {"op": "build", "case": NAME, ...}  build the model and inputs for a case, run its warm-up calls
  {"op": "time", "case": NAME, "min_seconds": S}  time calls for at least S seconds;
                                      answers {"rate": units/s}
Anything a framework prints goes to stderr, so stdout carries only answers. Only one worker
computes at a time while timing, so the implementations never compete for the cores."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

FRAMEWORKS = ("slr", "keras2", "keras3")
PEER_INSTALL = 'pip install -e ".[peer]"'


class Case:
    """A built case: `call` runs one step (train) or one forward pass (infer) worth `work`."""

    def __init__(self, call: Callable[[], Any], work: float) -> None:
        self.call, self.work = call, work

    def rate(self, min_seconds: float) -> float:
        """Work per second over as many calls as fill `min_seconds` (at least one)."""
        calls, start = 0, time.perf_counter()
        while True:
            self.call()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return self.work * calls / elapsed


def work_per_call(kind: str, batch: int) -> float:
    """Train and cached cases count optimizer steps, inference cases count clips."""
    return float(batch) if kind == "infer" else 1.0


class SlrBackend:
    """slr's SignClassifier, called the way slr's training and prediction call it."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.version = f"torch {torch.__version__}"

    def build(
        self,
        kind: str,
        batch: int,
        frames: int,
        image_size: int | None,
        arch: dict,
        options: dict,
        lr: float,
        weight_decay: float,
    ) -> Callable[[], Any]:
        import torch
        import torch.nn.functional as F

        from slr.models.encoder import FrameEncoder
        from slr.models.mobilenet_lstm import SignClassifier

        torch.manual_seed(0)
        net = SignClassifier(
            backbone=FrameEncoder(weights=None, **options), **arch
        )  # random init: speed does not depend on the weights
        # as conf/optimizer/adamw.yaml builds it for training: the fused (one kernel) AdamW
        optimizer = torch.optim.AdamW(
            [p for p in net.parameters() if p.requires_grad],
            lr=lr,
            weight_decay=weight_decay,
            fused=True,
        )
        labels = torch.randint(arch["num_classes"], (batch,))
        lengths = torch.full((batch,), frames)
        if kind == "cached":
            inputs = torch.randn(batch, frames, 1280)  # (B, T, 1280) features from the store
            forward = net.classify
        else:
            # uint8 RGB, as slr's loader delivers it; the encoder normalizes chunk by chunk
            inputs = torch.randint(
                0, 256, (batch, frames, 3, image_size, image_size), dtype=torch.uint8
            )  # (B, T, 3, S, S)
            forward = net

        def train_step() -> None:
            loss = F.cross_entropy(forward(inputs, lengths), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        @torch.inference_mode()
        def infer() -> None:
            net(inputs, lengths)

        if kind == "infer":
            net.eval()
            return infer
        net.train()
        return train_step


class KerasBackend:
    """The same network in Keras, called the way Keras users call it: train_on_batch and
    predict_on_batch on a compiled model."""

    def __init__(self, framework: str, threads: int) -> None:
        try:
            import tensorflow as tf

            if framework == "keras2":
                import tf_keras as keras
            else:
                import keras
        except ImportError as e:
            raise ImportError(
                f"{framework} needs the optional peer extra ({e}); install it with: {PEER_INSTALL}"
            ) from e
        if framework == "keras3" and not keras.__version__.startswith("3"):
            raise ImportError(f"keras3 found Keras {keras.__version__}; unset TF_USE_LEGACY_KERAS")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        self.tf, self.keras = tf, keras
        self.version = f"tensorflow {tf.__version__}, keras {keras.__version__}"

    def build(
        self,
        kind: str,
        batch: int,
        frames: int,
        image_size: int | None,
        arch: dict,
        options: dict,
        lr: float,
        weight_decay: float,
    ) -> Callable[[], Any]:
        import numpy as np

        from slr.peers.keras_net import build_classifier, compile_classifier

        self.keras.utils.set_random_seed(0)
        options = dict(options)
        jit_compile = options.pop("jit_compile", None)
        model = build_classifier(
            self.keras,
            frames=frames,
            image_size=None if kind == "cached" else image_size,
            **arch,
            **options,
        )
        compile_classifier(self.keras, model, lr, weight_decay, jit_compile)
        rng = np.random.default_rng(0)
        if kind == "cached":
            inputs = rng.standard_normal((batch, frames, 1280), dtype=np.float32)
        else:
            # float frames already scaled to [-1, 1] by mobilenet_v2.preprocess_input, NHWC
            shape = (batch, frames, image_size, image_size, 3)
            inputs = rng.uniform(-1, 1, shape).astype(np.float32)  # (B, T, S, S, 3)
        labels = rng.integers(0, arch["num_classes"], batch)
        if kind == "infer":
            return lambda: model.predict_on_batch(inputs)
        return lambda: model.train_on_batch(inputs, labels)


def make_backend(framework: str, threads: int) -> SlrBackend | KerasBackend:
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}: expected one of {FRAMEWORKS}")
    return SlrBackend(threads) if framework == "slr" else KerasBackend(framework, threads)


def serve(framework: str, threads: int) -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the frameworks print lands on stderr, not in the answers
    sys.stdout = sys.stderr

    def answer(obj: dict) -> None:
        answers.write(json.dumps(obj) + "\n")

    try:
        backend = make_backend(framework, threads)
    except Exception as e:
        answer({"error": f"{type(e).__name__}: {e}"})
        return
    answer({"ready": True, "version": backend.version})
    cases: dict[str, Case] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "build":
                start = time.perf_counter()
                call = backend.build(
                    request["kind"],
                    request["batch"],
                    request["frames"],
                    request.get("image_size"),
                    request["arch"],
                    request.get("options", {}),
                    request["lr"],
                    request["weight_decay"],
                )
                case = Case(call, work_per_call(request["kind"], request["batch"]))
                for _ in range(request["warmup"]):
                    call()
                cases[request["case"]] = case
                answer({"built": request["case"], "seconds": time.perf_counter() - start})
            elif request["op"] == "time":
                answer({"rate": cases[request["case"]].rate(request["min_seconds"])})
            else:
                answer({"error": f"unknown op {request['op']!r}"})
        except Exception as e:
            traceback.print_exc()
            answer({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
