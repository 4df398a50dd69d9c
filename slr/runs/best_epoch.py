"""The one record of the best epoch by val top-1: its val metrics, for metrics.json and
status.json. (ModelCheckpoint keeps the best epoch's weights by the same rule.)"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from slr.models.metrics import MONITOR, VAL_KEYS
from slr.runs.files import to_builtin
from slr.runs.status import RunStatus


class BestEpoch(Callback):
    """Keeps the val metrics of the best epoch by `val/top1` (the first of equals, as
    ModelCheckpoint keeps it), and reports each epoch's to the run status."""

    def __init__(self, status: RunStatus | None = None) -> None:
        self.status = status
        self.best: dict = {}

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # not on_validation_epoch_end: callbacks run that hook before the module logs its metrics
        if trainer.sanity_checking:
            return
        now = {k: trainer.callback_metrics[k] for k in VAL_KEYS if k in trainer.callback_metrics}
        now = to_builtin({**now, "epoch": trainer.current_epoch})
        if now.get(MONITOR) is not None and (not self.best or now[MONITOR] > self.best[MONITOR]):
            self.best = now
        if self.status is not None:
            self.status.progress(**now, best_epoch=self.best.get("epoch"))

    def state_dict(self) -> dict:
        return {"best": self.best}  # saved in checkpoints, so a resumed run keeps its best epoch

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict["best"]
