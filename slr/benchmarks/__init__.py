"""What `python -m slr.bench` measures: timing helpers that keep every repeat (timing.py) and the
local cases, live against cached training and the extraction path (local.py). The comparison
with other frameworks lives in slr.peers."""
