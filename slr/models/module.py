"""The LightningModule: loss, metrics and optimizers around a `SignClassifier`."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics import MeanMetric, SumMetric

from slr.data.dataset import Batch
from slr.models.metrics import TopKAccuracy
from slr.models.mobilenet_lstm import SignClassifier, mean_over_views


class SignLitModule(pl.LightningModule):
    """Trains and validates a SignClassifier, and predicts for evaluation (`predict_step`, which
    `slr.evaluation.evaluate` runs for the test after training and for slr.test). Logs
    `train/loss`, `train/top1` and `val/<name>` for every name in `metrics.EVAL_METRICS`.

    Args:
        net: the model.
        glosses: gloss names in label order; saved in every checkpoint so predictions can be named.
        optimizer: partial optimizer, called with the trainable parameters only.
        scheduler: partial LR scheduler (stepped per epoch), or None.
        label_smoothing: for the cross-entropy loss.
        net_config: the Hydra config that built `net`, saved so checkpoints rebuild it.
        preprocessing: the input the net was trained on (frames, size, mean, std), saved likewise.
        mixup_alpha: 0 = off; else each training batch is mixed with a shuffled copy of itself,
            features (cached or computed) and targets alike, with a Beta(alpha, alpha) weight.
        dataset: the datamodule class and reader settings it was trained with (`dataset_spec`),
            saved likewise: slr.test rebuilds the reader from it.
    """

    def __init__(
        self,
        net: SignClassifier,
        glosses: list[str],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        label_smoothing: float = 0.0,
        net_config: dict | None = None,
        preprocessing: dict | None = None,
        mixup_alpha: float = 0.0,
        dataset: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer = optimizer
        self.scheduler = scheduler
        num_classes = len(glosses)
        self.train_loss = MeanMetric()
        self.train_acc = TopKAccuracy(num_classes, ks=(1,))
        self.val_acc = TopKAccuracy(num_classes)
        # videos that failed to decode, counted so reports say how many were really evaluated
        self.val_skipped = SumMetric()

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(frames, lengths)

    def logits(self, batch: Batch) -> torch.Tensor:
        """(B, num_classes) from the batch's frames, or its cached backbone features."""
        if "features" in batch:
            features = self.net.stored_features(batch["features"], batch["length"])
            return self.net.classify(features, batch["length"])
        return self.net(batch["frames"], batch["length"])

    def on_fit_start(self) -> None:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        rank_zero_info(f"parameters: {trainable:,} trainable, {frozen:,} frozen (backbone)")

    def on_train_start(self) -> None:
        # the sanity check's validation batches must not count towards the first epoch
        self.val_acc.reset()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        if not batch["video_id"]:
            return None  # every clip of this batch failed to decode; already logged
        smoothing = self.hparams.label_smoothing
        if self.hparams.get("mixup_alpha", 0.0) > 0:
            logits, loss = self.mixup_step(batch)
        else:
            logits = self.logits(batch)
            loss = F.cross_entropy(logits, batch["label"], label_smoothing=smoothing)
        self.train_loss(loss, weight=len(batch["video_id"]))
        self.train_acc(logits.detach(), batch["label"])
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def mixup_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and loss on the batch mixed with a shuffled copy of itself. Clips are mixed as
        frame features, time step by time step; a mixed clip lasts as long as the longer of its
        two (the shorter one's padding is zeros)."""
        if "features" in batch:
            features = self.net.stored_features(batch["features"], batch["length"])
        else:
            features = self.net.encoder(batch["frames"], batch["length"])  # (B, T, D)
        lam = float(
            torch.distributions.Beta(*[torch.tensor(self.hparams.mixup_alpha)] * 2).sample()
        )
        perm = torch.randperm(len(features), device=features.device)
        mixed = lam * features + (1 - lam) * features[perm]  # (B, T, D)
        lengths = torch.maximum(batch["length"], batch["length"][perm])
        logits = self.net.classify(mixed, lengths)
        smoothing, labels = self.hparams.label_smoothing, batch["label"]
        loss = lam * F.cross_entropy(logits, labels, label_smoothing=smoothing) + (1 - lam) * (
            F.cross_entropy(logits, labels[perm], label_smoothing=smoothing)
        )
        return logits, loss

    def on_train_epoch_end(self) -> None:
        self.log("train/top1", self.train_acc.compute()["top1"])
        self.train_acc.reset()

    def _eval_step(self, metric: TopKAccuracy, skipped: SumMetric, batch: Batch) -> None:
        skipped.update(len(batch["skipped"]))
        if batch["video_id"]:
            metric.update(self.logits(batch), batch["label"])

    def _eval_epoch_end(
        self, stage: str, metric: TopKAccuracy, skipped: SumMetric
    ) -> dict[str, torch.Tensor]:
        values = metric.compute()  # compute() syncs across processes, so no sync_dist here
        # support outside compute() is this process's share: gather it to count every video
        values["videos"] = self.all_gather(metric.support.sum()).sum()
        values["skipped"] = skipped.compute()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})
        metric.reset()
        skipped.reset()
        return values

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(self.val_acc, self.val_skipped, batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val", self.val_acc, self.val_skipped)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        """Class probabilities per video. With several views per video (`frames` (B, V, T, 3,
        S, S), `length` (B, V)), each view's softmax, averaged over the views."""
        out = {"video_id": batch["video_id"], "errors": batch["errors"]}
        if not batch["video_id"]:
            return out
        frames, lengths = batch.get("frames"), batch["length"]
        if frames is None or frames.dim() == 5:  # one view, or cached features
            probs = mean_over_views(self.logits(batch), 1)  # (B, C)
        else:
            num_views = frames.shape[1]
            # (B, V, T, 3, S, S) -> (B*V, T, 3, S, S): every view of every video is one clip
            logits = self.net(frames.flatten(0, 1), lengths.flatten())
            probs = mean_over_views(logits, num_views)  # (B*V, C) -> (B, C)
        return {**out, "label": batch["label"].cpu(), "probs": probs.float().cpu()}

    def configure_optimizers(self):
        tuned = (
            self.net.encoder.tuned_parameters()
            if hasattr(self.net.encoder, "tuned_parameters")
            else []
        )
        ids = {id(p) for p in tuned}
        params = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        if tuned:  # the fine-tuned backbone blocks, at their own learning rate if one is set
            lr = self.net.encoder.tune_lr
            params = [{"params": params}, {"params": tuned, **({"lr": lr} if lr else {})}]
        optimizer = self.optimizer(params=params)
        if self.scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer=optimizer)}
