"""Sweeps: a grid with a failing run, unique run directories, Optuna, and the SLURM launcher
config (composed and turned into an sbatch script, since no cluster is here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from slr.models.checkpoint import load_checkpoint
from tests.helpers import compose_cfg, run_train


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_grid_goes_on_after_a_failed_run(tiny_root, tmp_path):
    """`python -m slr.train -m`: every combination runs with its own overrides; the impossible
    ones (hidden size -1) record `failed` with their error while the others finish; the sweep
    still ends non-zero, naming the failure, and leaves its table."""
    sweep = tmp_path / "sweep"
    done = run_train(
        tiny_root,
        "trainer.max_epochs=1",
        "model.lstm_hidden=-1,8",
        "model.lstm_layers=1,2",
        f"hydra.sweep.dir={sweep}",
        multirun=True,
    )
    assert done.returncode != 0
    assert "run failed" in done.stderr + done.stdout
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 4
    statuses = {}
    for run in runs:
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        key = tuple(o for o in overrides if o.startswith("model.lstm_"))
        statuses[key] = read(run / "status.json")
        if statuses[key]["status"] == "done":
            metrics = read(run / "metrics.json")
            assert metrics["epochs"] == 1
            assert metrics["val/top1"] == pytest.approx(statuses[key]["val/top1"])
            lstm = load_checkpoint(metrics["best_ckpt"]).net.lstm  # each run got its overrides
            assert key == (
                f"model.lstm_hidden={lstm.hidden_size}",
                f"model.lstm_layers={lstm.num_layers}",
            )
    for layers in (1, 2):
        failed = statuses[("model.lstm_hidden=-1", f"model.lstm_layers={layers}")]
        assert failed["status"] == "failed"
        assert "hidden_size must be greater than zero" in failed["error"]
        assert "Traceback" in failed["traceback"]
        assert statuses[("model.lstm_hidden=8", f"model.lstm_layers={layers}")]["status"] == "done"

    # the table is rewritten after every run, so a sweep that ends in an error has one too
    table = (sweep / "aggregate.md").read_text()
    assert "| model.lstm_hidden | model.lstm_layers |" in table
    assert table.count("| failed |") == 2
    assert (sweep / "aggregate.csv").is_file()


def test_runs_started_together_get_their_own_directories(tmp_path):
    """train.yaml's run and sweep dirs, composed and resolved twice within the same second as two
    processes would: the time is the same, the microseconds (`${now:%f}`) are not."""
    from hydra import compose, initialize
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import setup_globals

    setup_globals()  # Hydra's `now` resolver, as hydra.main registers it
    dirs = []
    for _ in range(2):
        GlobalHydra.instance().clear()
        with initialize(version_base="1.3", config_path="../conf"):
            cfg = compose("train", overrides=["data.root=/x"], return_hydra_config=True)
        dirs.append((cfg.hydra.run.dir, cfg.hydra.sweep.dir))
    GlobalHydra.instance().clear()
    (run_a, sweep_a), (run_b, sweep_b) = dirs
    assert run_a.rsplit("-", 1)[1] != run_b.rsplit("-", 1)[1]  # even within the same second
    assert run_a != run_b and sweep_a != sweep_b
    # one process resolves the same directory each time it asks
    assert run_a.rsplit("-", 1)[1] == sweep_a.rsplit("-", 1)[1]
    assert len(run_a.rsplit("-", 1)[1]) == 6


@pytest.mark.slow
def test_optuna_maximizes_val_top1(tiny_root, tmp_path):
    sweep = tmp_path / "optuna"
    done = run_train(
        tiny_root,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=1",
        "trainer.max_epochs=1",
        "test=false",
        f"hydra.sweep.dir={sweep}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    values = [read(p)["val/top1"] for p in sweep.glob("*/metrics.json")]
    assert len(values) == 2
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_value"] == pytest.approx(max(values))
    # two tiny trials may tie, so the direction is checked in the config the trials ran with
    hydra_cfg = yaml.safe_load((sweep / "0" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra_cfg["sweeper"]["direction"] == "maximize"
    assert {"optimizer.lr", "model.dropout"} <= set(result["best_params"])


def test_slurm_launcher_writes_the_sbatch_script(tmp_path, monkeypatch):
    """hydra/launcher=slurm composes, and submitit turns it into the sbatch options a user asks
    for (submitit wants an `srun` on PATH; a stub stands in for the cluster)."""
    submitit = pytest.importorskip("submitit")
    from hydra import compose, initialize
    from hydra.core.global_hydra import GlobalHydra
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    GlobalHydra.instance().clear()
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.nodes=2",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "data.root=/data/wlasl",
        f"hydra.sweep.dir={tmp_path}",
    ]
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params.pop("_target_").endswith("SlurmLauncher")

    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\nexit 1\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}:{__import__('os').environ['PATH']}")
    # what hydra_submitit_launcher's SlurmLauncher.launch does with the config
    executor = submitit.AutoExecutor(cluster="slurm", folder=params.pop("submitit_folder"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in base else f"slurm_{k}": v for k, v in params.items() if k != "max_num_timeout"}
    )
    script = executor._executor._make_submission_file_text("python -m slr.train", "0")
    for option in (
        "--partition=gpu",
        "--gpus-per-node=4",
        "--ntasks-per-node=4",  # one task per GPU, as Lightning's SLURMEnvironment expects
        "--nodes=2",
        "--cpus-per-task=8",
        "--mem=64GB",
        "--time=720",
    ):
        assert f"#SBATCH {option}\n" in script, option
    assert cfg.trainer.strategy == "ddp"
    assert cfg.trainer.num_nodes == 2


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_cpu"])
def test_trainer_configs_compose(trainer, tmp_path):
    cfg = compose_cfg("train", [f"trainer={trainer}", "data.root=/x"], tmp_path)
    expected = {"cpu": "cpu", "gpu": "gpu", "ddp": "gpu", "ddp_cpu": "cpu"}[trainer]
    assert cfg.trainer.accelerator == expected
    if trainer.startswith("ddp"):
        assert cfg.trainer.strategy == "ddp"
    if trainer == "ddp_cpu":
        from hydra.utils import instantiate

        built = instantiate(cfg.trainer, logger=False)
        assert built.world_size == 2


@pytest.mark.parametrize("n", [100, 300, 1000, 2000])
def test_reference_experiments_read_the_official_splits(n, shared_wlasl, tmp_path):
    """experiment=wlaslN on the real index and nslt_N.json: N glosses and all three splits."""
    from hydra.utils import instantiate

    cfg = compose_cfg("train", [f"experiment=wlasl{n}", f"data.root={shared_wlasl}"], tmp_path)
    assert cfg.data.subset == n and cfg.data.split_file == f"nslt_{n}.json"
    datamodule = instantiate(cfg.data)
    assert datamodule.num_classes == n
    report = datamodule.availability()
    assert all(report["splits"][s]["nominal"] > 0 for s in ("train", "val", "test"))
