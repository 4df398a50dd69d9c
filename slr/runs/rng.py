"""Random number generators' states in checkpoints, so a resumed run continues exactly."""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class RngState(Callback):
    """Lightning's checkpoints restore the model, optimizer, scheduler and loops but not the
    random generators, so a resumed run would draw other shuffles, cached views and dropout masks
    than the run it continues. This saves them with every checkpoint (taken at the end of an
    epoch) and sets them back once the checkpoint is loaded, before the training loop creates its
    first DataLoader iterator (the sanity check in between runs under Lightning's isolate_rng).
    Under DDP every rank gets rank 0's states, as after `seed_everything`. DataLoader workers kept
    alive across epochs (live frames with num_workers > 0) keep their own generators, which no
    checkpoint holds, so there a resumed run is close to, not equal to, an uninterrupted one."""

    def __init__(self) -> None:
        self.pending: dict | None = None

    def state_dict(self) -> dict:
        name, keys, *rest = np.random.get_state()
        states = {
            "torch": torch.get_rng_state(),
            # a list, not an ndarray: checkpoints must load with torch.load(weights_only=True)
            "numpy": [name, keys.tolist(), *rest],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, state_dict: dict) -> None:
        self.pending = state_dict

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.pending is None:
            return
        states, self.pending = self.pending, None
        torch.set_rng_state(states["torch"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
        random.setstate(states["python"])
        # one state per GPU: only where the resumed run sees as many GPUs as the first one did
        if "cuda" in states and len(states["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
