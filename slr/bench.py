"""Speed of the parts that decide a run's wall time, measured side by side on this machine:
`python -m slr.bench [image_size=224 num_frames=30 batch_size=4 clips=DIR]` (slr.benchmarks.local);
or slr against the same network in another framework: `python -m slr.bench peer=keras`
(slr.peers.compare). Prints a table and one JSON line, every repeat and its spread included."""

from __future__ import annotations

import json

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from slr.benchmarks import local
from slr.peers import compare


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    if cfg.get("peer") is not None:
        peer = OmegaConf.to_container(cfg.peer, resolve=True)
        result = compare.compare(**peer, log_dir=HydraConfig.get().runtime.output_dir)
        print(compare.table(result, peer["cases"]))
    else:
        result = local.run(cfg)
        print(local.table(result, cfg))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
