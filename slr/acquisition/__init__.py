"""Getting data onto disk: download, fetch, prepare and trim WLASL videos, the manifest of what
is there, the health scan (slr.doctor) and the synthetic demo dataset. Nothing in the training
pipeline (slr.data) imports this package."""
