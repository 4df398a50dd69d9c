"""slr: isolated sign-language recognition on WLASL with a frozen MobileNetV2 + LSTM."""

import os

# libgomp's default spin-waiting collapses torch's CPU throughput (MobileNetV2: 140 -> 5 frames/s
# measured on 2 cores) whenever another process, such as a DataLoader worker decoding video, wants
# a core. Sleeping idle OpenMP threads costs little without contention. Must precede `import torch`;
# an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _register_resolvers() -> None:
    """`${uid:}` in the configs' hydra.run.dir / hydra.sweep.dir: six random hex digits, so runs
    started in the same second (on one machine or several) never share a directory. Drawn once
    per composed config (OmegaConf caches a resolver's value with its config, and Hydra copies
    that cache into each job of a sweep), so a run or sweep names one directory throughout.
    Registered on import, as every entry point (`python -m slr.X`) imports slr."""
    import secrets

    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(
        "uid", lambda: secrets.token_hex(3), use_cache=True, replace=True
    )


_register_resolvers()
