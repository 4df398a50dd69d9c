"""Resuming a run with `ckpt_path`: which file `last` means, checked against the run's own settings
before any work (so a changed override does not cost an extraction for the wrong settings and then
a size mismatch), and the earlier parts' records kept."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from slr.models.checkpoint import check_checkpoint_file
from slr.runs.provenance import flat
from slr.runs.status import STATUS_FILE

log = logging.getLogger(__name__)

ALLOW_KEY = "allow_changed_config"
# what differs between a run's parts by design, and the backbone's speed settings (how it is
# chunked and traced changes how fast the same features come, not which)
IGNORED = (
    "ckpt_path", ALLOW_KEY, "paths.", "model.backbone.chunk_frames",
    "model.backbone.chunk_pixels", "model.backbone.cpu_jit",
)  # fmt: skip


def saved_settings(run_dir: Path, ckpt_path: str | None) -> tuple[dict, str]:
    """The settings the run was started with (flattened) and where they come from: the run
    directory's config.yaml, else the checkpoint's data and model hyperparameters."""
    config_file = run_dir / "config.yaml"
    if config_file.is_file():
        return flat(OmegaConf.to_container(OmegaConf.load(config_file))), str(config_file)
    if ckpt_path and ckpt_path != "last" and Path(ckpt_path).is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception:  # not a checkpoint: resolve_ckpt_path says so with the file's name
            return {}, ""
        data = ckpt.get("datamodule_hyper_parameters") or {}
        net = dict((ckpt.get("hyper_parameters") or {}).get("net_config") or {})
        net.pop("num_classes", None)  # derived from the data, not a model setting
        return {**flat(dict(data), "data."), **flat(net, "model.")}, ckpt_path
    return {}, ""


def changed_settings(cfg: DictConfig, before: dict) -> dict[str, tuple]:
    """Keys set in both the saved and the current config whose values differ: {key: (was, now)}.
    Keys only one side has (settings newer code added or removed) do not count."""
    now = flat(OmegaConf.to_container(cfg, resolve=True))
    changed = {}
    for key in sorted(set(now) & set(before)):
        if key.startswith(IGNORED):
            continue
        was, is_ = before[key], now[key]
        if isinstance(was, tuple):  # checkpoints hold tuples where configs hold lists
            was = list(was)
        if was != is_:
            changed[key] = (was, is_)
    return changed


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """Raise ValueError naming every setting that differs from the run being resumed, unless
    `allow_changed_config=true` says it is on purpose (then they are logged)."""
    before, source = saved_settings(run_dir, cfg.get("ckpt_path"))
    if not before:
        return
    changed = changed_settings(cfg, before)
    if not changed:
        return
    lines = "; ".join(f"{k}: {was!r} -> {now!r}" for k, (was, now) in changed.items())
    if cfg.get(ALLOW_KEY):
        log.warning("resuming with changed settings (%s=true): %s", ALLOW_KEY, lines)
        return
    raise ValueError(
        f"resuming with settings that differ from the run's own ({source}): {lines}. Give the "
        f"run's overrides (in {run_dir / '.hydra' / 'overrides.yaml'}), or add "
        f"{ALLOW_KEY}=true to resume with these on purpose"
    )


def finished_metrics(run_dir: Path) -> dict | None:
    """metrics.json of a run whose status is done, or None: a finished run has nothing to resume."""
    status, metrics = run_dir / STATUS_FILE, run_dir / "metrics.json"
    if not (status.is_file() and metrics.is_file()):
        return None
    try:
        if json.loads(status.read_text()).get("status") != "done":
            return None
        return json.loads(metrics.read_text())
    except (OSError, ValueError):
        return None


def keep_earlier_values(metrics: dict, run_dir: Path) -> dict:
    """A resumed run that trained no further epoch has no train/* values of its own: keep the
    ones metrics.json holds rather than writing nulls over them."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return metrics
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return metrics
    kept = {k: v for k, v in earlier.items() if v is not None and metrics.get(k) is None}
    return {**metrics, **kept}


def keep_first_overrides(run_dir: Path, resuming: bool) -> None:
    """Hydra rewrites RUN/.hydra/overrides.yaml with each part's command line: keep the first
    part's there (a copy, overrides.first.yaml, is made when a run starts) and move a resumed
    part's aside to overrides.resumeN.yaml."""
    hydra_dir = run_dir / ".hydra"
    current, first = hydra_dir / "overrides.yaml", hydra_dir / "overrides.first.yaml"
    if not current.is_file():
        return  # not started through Hydra's command line
    if not resuming:
        shutil.copyfile(current, first)
        return
    if not first.is_file():
        if (run_dir / "config.yaml").is_file():
            log.warning("%s: the first part's overrides were not kept (older code)", current)
        return
    n = 1
    while (part := hydra_dir / f"overrides.resume{n}.yaml").exists():
        n += 1
    os.replace(current, part)
    shutil.copyfile(first, current)
    log.info("%s keeps the first part's overrides; this part's are in %s", current, part.name)


def resolve_ckpt_path(ckpt_path: str | None, trainer: pl.Trainer) -> str | None:
    """`ckpt_path=last` is this run directory's checkpoints/last.ckpt (resume a run with
    `hydra.run.dir=RUN_DIR ckpt_path=last`); anything else is a checkpoint file."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        dirs = [c.dirpath for c in trainer.checkpoint_callbacks if c.dirpath]
        if not dirs:
            raise ValueError("ckpt_path=last needs the checkpoint callbacks (callbacks=default)")
        path = Path(dirs[-1]) / "last.ckpt"  # callbacks/default.yaml's last_checkpoint
        hint = "set hydra.run.dir to the interrupted run's directory, or ckpt_path to a file"
    else:
        path = Path(ckpt_path)
        hint = "check ckpt_path"
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no checkpoint at {path}; {hint}")
    check_checkpoint_file(path)  # Lightning's own error for a damaged file names neither
    log.info("resuming from %s", path)
    return str(path)


def keep_csv_history(loggers: list) -> None:
    """CSVLogger deletes an existing metrics.csv when it starts; on resume, keep the earlier
    epochs by moving that file aside (metrics.part1.csv, part2, ...)."""
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            current = Path(logger.log_dir) / "metrics.csv"
            if current.is_file():
                n = 1
                while (part := current.with_name(f"metrics.part{n}.csv")).exists():
                    n += 1
                current.rename(part)
                log.info("earlier epochs' metrics kept in %s", part)
