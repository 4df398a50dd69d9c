"""What a run was made of: the resolved config, the code's git commit, package versions, the
command line. Written into every run directory (next to Hydra's .hydra/ and glosses.txt)."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from slr.runs.files import write_json

log = logging.getLogger(__name__)

PACKAGES = (
    "slr",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "av",
    "numpy",
)
CODE_DIR = Path(__file__).resolve().parents[1]  # the repository holding the slr package


def git_state(repo: Path = CODE_DIR) -> dict:
    """Commit and dirty flag of the code's repository; nulls (with the reason) when the code
    is not in a git checkout (e.g. installed from a wheel) or git is missing."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or f"git {args[0]} failed")
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain").splitlines()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
        return {"commit": None, "dirty": None, "note": f"no git commit for {repo}: {e}"}
    # the changed paths, so a dirty run says what differed from the commit
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:50]}


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def record_provenance(cfg: DictConfig, run_dir: Path, resuming: bool = False) -> dict:
    """Write config.yaml (the config with every interpolation resolved) and provenance.json.

    A resumed run keeps the first part's config.yaml, warns about keys whose value changed, and
    adds its own git state and versions to provenance.json under `resumes`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(cfg, resolve=True)
    info = {
        "git": git_state(),
        "versions": versions(),
        "command": [sys.executable, *sys.argv],
        "host": platform.node(),
    }
    config_file, info_file = run_dir / "config.yaml", run_dir / "provenance.json"
    if resuming and config_file.is_file():
        before = flat(OmegaConf.to_container(OmegaConf.load(config_file)))
        changed = sorted(
            k for k, v in flat(config).items() if k != "ckpt_path" and before.get(k) != v
        )
        if changed:
            log.warning("resuming with a changed config: %s", ", ".join(changed))
        first = json.loads(info_file.read_text()) if info_file.is_file() else {}
        info = {**first, "resumes": [*first.get("resumes", []), info]}
    else:
        config_file.write_text(OmegaConf.to_yaml(config))
    write_json(info_file, info)
    git = info.get("resumes", [info])[-1]["git"]
    if git["dirty"]:
        log.warning("code has uncommitted changes (recorded in provenance.json)")
    return info


def flat(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
