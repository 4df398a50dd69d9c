"""Dataset readers: one layout each (WLASL, ASL Citizen, a CSV, a folder per gloss), all giving
the same `SubsetIndex` (see `base.DatasetReader`)."""
