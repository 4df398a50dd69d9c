"""`python -m slr.extract` over real clips with data.num_workers 0, 1 and 2, each into a fresh
feature cache, and one table of what each run recorded in its extract.json (issue 16):

    python experiments/speed/extract_workers.py --root ../shared/wlasl100 \
        --weights ../shared/weights/mobilenet_v2_imagenet_keras.pth [--split-file nslt_100.json]
        [--workers 0 1 2] [--views 1] [--out /tmp/extract_workers] [-- more overrides]

`hidden` = end-to-end frames/s over backbone-alone frames/s of the same run: 1.0 means decoding
cost the backbone nothing. Prints the load average before each run, since the machine is shared."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COLUMNS = [
    ("workers", "num_workers", "d"),
    ("clips", "clips", "d"),
    ("frames", "frames", "d"),
    ("seconds", "seconds", ".1f"),
    ("clips/s", "clips_per_s", ".2f"),
    ("frames/s", "frames_per_s", ".1f"),
    ("backbone f/s", "backbone_frames_per_s", ".1f"),
    ("backbone s", "backbone_seconds", ".1f"),
    ("decode s", "decode_seconds", ".1f"),
    ("waited s", "wait_seconds", ".1f"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--weights", default=None, help="model.backbone.weights_path")
    parser.add_argument("--split-file", default="nslt_100.json")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--views", type=int, default=1, help="data.cache_views")
    parser.add_argument("--out", default="/tmp/extract_workers")
    parser.add_argument("overrides", nargs="*", help="more slr.extract overrides")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for workers in args.workers:
        run_dir, cache = out / f"workers{workers}", out / f"cache{workers}"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)  # a fresh store: every clip is extracted
        cmd = [
            sys.executable, "-m", "slr.extract", f"data.root={args.root}",
            f"data.split_file={args.split_file}", f"data.cache_views={args.views}",
            f"data.num_workers={workers}", f"data.cache_dir={cache}",
            f"hydra.run.dir={run_dir}", *args.overrides,
        ]  # fmt: skip
        if args.weights:
            cmd.append(f"model.backbone.weights_path={args.weights}")
        load = os.getloadavg()
        print(f"num_workers={workers}: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        timing = json.loads((run_dir / "extract.json").read_text())["timing"]
        rows.append({**timing, "wall": wall, "load": load[0]})
        shutil.rmtree(cache, ignore_errors=True)
    head = "".join(f"{h:>13}" for h, _, _ in COLUMNS) + "   hidden   load  command s"
    print(head)
    for r in rows:
        hidden = r["frames_per_s"] / r["backbone_frames_per_s"]
        line = "".join(f"{r[k]:13{fmt}}" for _, k, fmt in COLUMNS)
        print(f"{line}   {hidden:6.2f} {r['load']:6.2f} {r['wall']:10.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
