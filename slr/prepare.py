"""Cut and convert downloaded sources into the clips the loader reads:
`python -m slr.prepare data.root=ROOT [data.subset=N] [key=value ...]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from slr.acquisition.prepare import prepare


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    prepare(
        root=cfg.data.root,
        subset=cfg.data.subset,
        split_file=cfg.data.split_file,
        workers=cfg.workers,
        codec=cfg.codec,
        force=cfg.force,
        progress=cfg.progress,
    )


if __name__ == "__main__":
    main()
