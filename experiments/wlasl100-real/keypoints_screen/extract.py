"""The screen of round 4: MediaPipe Holistic landmarks of the full, uncropped frames at slr's
evaluation frames (30, evenly spaced) of every clip in ../shared/wlasl100, one .npy per clip.
From the repo root, two shards at once on 2 cores (about 10 minutes):
  python experiments/wlasl100-real/keypoints_screen/extract.py 0 2 /tmp/kp &
  python experiments/wlasl100-real/keypoints_screen/extract.py 1 2 /tmp/kp"""

import sys
import time
from pathlib import Path

import mediapipe as mp
import numpy as np

import slr  # noqa
from slr.data.sampling import uniform_indices
from slr.data.video import read_frames
from slr.data.wlasl import read_subset

root = Path("../shared/wlasl100")
shard, nshards, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
idx = read_subset(root / "WLASL_v0.3.json", 100, root / "nslt_100.json")
insts = [
    i for s in ("train", "val") for i in idx.splits[s] if (root / "videos" / i.file()).exists()
]
insts = insts[shard::nshards]
POSE = 25  # upper body: nose .. hips
t0 = time.time()
for k, inst in enumerate(insts):
    dst = out / f"{inst.video_id}.npy"
    if dst.exists():
        continue
    frames, _ = read_frames(
        root / "videos" / inst.file(), 0.0, None, truncated="use"
    )  # data.trimmed=true
    picks = uniform_indices(len(frames), 30)
    # (T, 25 + 21 + 21, 3): x, y in [0, 1] of the frame, and presence (pose: visibility)
    kp = np.zeros((len(picks), POSE + 42, 3), np.float32)
    with mp.solutions.holistic.Holistic(static_image_mode=False, model_complexity=1) as hol:
        for t, j in enumerate(picks):
            r = hol.process(frames[j].to_ndarray(format="rgb24"))
            if r.pose_landmarks:
                kp[t, :POSE] = [(p.x, p.y, p.visibility) for p in r.pose_landmarks.landmark[:POSE]]
            for off, hand in ((POSE, r.left_hand_landmarks), (POSE + 21, r.right_hand_landmarks)):
                if hand:
                    kp[t, off : off + 21] = [(p.x, p.y, 1.0) for p in hand.landmark]
    np.save(dst, kp)
    if k % 20 == 0:
        print(shard, k, len(insts), f"{time.time() - t0:.0f}s", flush=True)
print("done", shard, f"{time.time() - t0:.0f}s", flush=True)
