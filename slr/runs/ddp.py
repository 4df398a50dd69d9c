"""DDP inside Hydra: what lets `trainer=ddp` run in a single run, in a local sweep (`-m`) and
under SLURM. Each function works around one upstream behaviour, linked at it."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

# what Lightning's DDP launcher sets in the launching process (OMP_NUM_THREADS along with
# torch.set_num_threads: the cores shared out between the job's processes)
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS")


def single_run_argv() -> None:
    """Lightning's DDP launcher starts ranks 1..N-1 by re-running sys.argv in hydra.run.dir. In a
    multirun that command would start the whole sweep again in a wrong directory, so make it this
    job's own command: its overrides, and its directory as run.dir.
    Upstream: https://github.com/Lightning-AI/pytorch-lightning/issues/11300 (DDP with Hydra
    multirun), https://github.com/Lightning-AI/pytorch-lightning/issues/16694 (the command the
    launcher builds) and https://github.com/facebookresearch/hydra/issues/2070."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("hparams_search=")]
    sys.argv = [sys.argv[0], *config_flags(sys.argv[1:]), *overrides]
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def config_flags(argv: list[str]) -> list[str]:
    """Hydra's options that say where the config comes from (`-cd DIR`, `--config-name=X`): a
    job's own command needs them too, or its other ranks compose another config."""
    keep, args = [], iter(argv)
    for arg in args:
        if arg in CONFIG_FLAGS:
            keep += [arg, next(args, "")]
        elif arg.split("=", 1)[0] in CONFIG_FLAGS:
            keep.append(arg)
    return keep


@contextmanager
def own_process_group():
    """A local sweep runs its jobs one after another in one process. Lightning's DDP launcher
    leaves its process group and its variables (LOCAL_RANK=0, MASTER_PORT, ...) behind, and the
    next job would take them as "launched externally" and wait for ranks it never starts: undo
    both after each job.
    Upstream: https://github.com/Lightning-AI/pytorch-lightning/issues/2537 (a second DDP Trainer
    in one process)."""
    before = {k: os.environ.get(k) for k in DDP_ENV}
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
