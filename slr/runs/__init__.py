"""Run bookkeeping: status.json, provenance, the data record, metrics files, the RNG and
best-epoch callbacks, exact resume, and the glue that lets DDP run inside Hydra sweeps."""
