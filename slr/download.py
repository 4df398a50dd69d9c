"""Fetch the source videos of a WLASL subset into ROOT/raw/:
`python -m slr.download data.root=ROOT [data.subset=N] [key=value ...]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from slr.acquisition.download import download


@hydra.main(version_base="1.3", config_path="../conf", config_name="download")
def main(cfg: DictConfig) -> None:
    download(
        root=cfg.data.root,
        subset=cfg.data.subset,
        split_file=cfg.data.split_file,
        workers=cfg.workers,
        rate_per_host=cfg.rate_per_host,
        timeout=cfg.timeout,
        retries=cfg.retries,
        backoff=cfg.backoff,
        max_backoff=cfg.max_backoff,
        recheck_dead=cfg.recheck_dead,
        youtube=cfg.youtube,
        ytdlp_format=cfg.ytdlp_format,
        progress=cfg.progress,
    )


if __name__ == "__main__":
    main()
