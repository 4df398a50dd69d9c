"""Fill the feature stores up front (say on a GPU node, before a CPU sweep):
`python -m slr.extract [the data and model overrides slr.train will get]`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from slr.data.wlasl import SPLITS
from slr.runs.records import record_data

log = logging.getLogger(__name__)


def extract(cfg: DictConfig) -> dict[str, dict]:
    """Build (or find) the train, val and test stores that `slr.train data.features=cached`
    with the same settings will read; return a summary per split."""
    datamodule = instantiate(cfg.data, features="cached")
    datamodule.prepare_data()
    counts = record_data(datamodule, Path(cfg.paths.output_dir))
    datamodule.use_encoder(instantiate(cfg.model.backbone).store_encoder())
    summary = {}
    for split in SPLITS:
        if not counts[split]["available"]:
            log.warning("%s: no videos available, nothing to extract", split)
            continue
        dataset = datamodule.cached(split)
        summary[split] = {
            **counts[split],
            "cached": len(dataset) - len(dataset.store.failed),
            "failed": len(dataset.store.failed),
            "views": dataset.store.views,
            "store": str(dataset.store.path),
        }
    header = f"{'split':6} {'listed':>7} {'missing':>8} {'cached':>7} {'failed':>7} {'views':>6}"
    lines = [header] + [
        f"{s:6} {v['nominal']:7d} {v['missing']:8d} {v['cached']:7d} {v['failed']:7d} "
        f"{v['views']:6d}  {v['store']}"
        for s, v in summary.items()
    ]
    log.info("feature stores:\n%s", "\n".join(lines))
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    extract(cfg)


if __name__ == "__main__":
    main()
