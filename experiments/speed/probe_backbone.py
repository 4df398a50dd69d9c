"""Probe: backbone frames/s of several runtimes and chunk sizes, interleaved repeats, and each
one's largest relative feature error against the first variant:

    python experiments/speed/probe_backbone.py SIZE FRAMES torch:8,onnxruntime:8,bf16:8 REPEATS
"""

import statistics
import sys
import time

import torch

from slr.models.encoder import FrameEncoder

torch.set_num_threads(2)
size = int(sys.argv[1]) if len(sys.argv) > 1 else 224
n = int(sys.argv[2]) if len(sys.argv) > 2 else 120
variants = sys.argv[3].split(",") if len(sys.argv) > 3 else ["torch:4", "torch:8"]
frames = torch.randint(0, 256, (1, n, 3, size, size), dtype=torch.uint8)
encs = {}
for v in variants:
    runtime, chunk = v.split(":")
    kw = {"torch": {}, "bf16": {"bf16": True}}.get(runtime, {"runtime": runtime})
    encs[v] = FrameEncoder(weights=None, chunk_frames=int(chunk), **kw)
ref = None
for v, e in encs.items():
    with torch.inference_mode():
        out = e(frames)
        e(frames)
    if ref is None:
        ref = out
    err = ((out - ref).norm(dim=-1) / ref.norm(dim=-1)).max().item()
    print(f"{v}: max rel err vs first {err:.2e}", flush=True)
rates = {v: [] for v in encs}
for _ in range(int(sys.argv[4]) if len(sys.argv) > 4 else 3):
    for v, e in encs.items():
        t0 = time.perf_counter()
        with torch.inference_mode():
            e(frames)
        rates[v].append(n / (time.perf_counter() - t0))
for v, r in rates.items():
    print(f"{size}px {v:20} median {statistics.median(r):7.1f} fps  {[round(x, 1) for x in r]}")
