"""Experiment: does MediaPipe Holistic keypoints lift WLASL100 val top-1? Trains the recipe's head
(attention LSTM 256, dropout .5, feature dropout .2, AdamW 1e-3 wd .05, cosine 100 ep, B=16) on
  kp: keypoints only | cnn: the cached 8-view MobileNetV2 features | both: concatenated |
  late: one head per stream, logits summed (cnn_w weights the CNN's).
From the repo root:
  python experiments/wlasl100-real/keypoints_screen/train.py \
      MODE SEED KP_DIR TRAIN_STORE VAL_STORE [key=value ...]
with KP_DIR from extract.py and the recipe's MobileNetV2 feature stores (8 train views, 1 val view)
under data.cache_dir. Prints one JSON line: the best epoch's val top-1 / top-5."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import slr  # noqa
from slr.data.features import FeatureStore
from slr.data.wlasl import read_subset
from slr.models.mobilenet_lstm import SignClassifier

mode, seed = sys.argv[1], int(sys.argv[2])
kpdir, train_store, val_store = (Path(a) for a in sys.argv[3:6])
extra = dict(a.split("=") for a in sys.argv[6:])
root = Path("../shared/wlasl100")
idx = read_subset(root / "WLASL_v0.3.json", 100, root / "nslt_100.json")
tr, va = FeatureStore.open(train_store), FeatureStore.open(val_store)
label = {i.video_id: i.label for s in idx.splits.values() for i in s}
POSE = 25


def kp_features(kp):
    """(T, 67, 3) raw -> (T, D): body-normalized coordinates of pose and hands, hand shapes
    relative to their wrists, presence flags."""
    xy, pres = kp[..., :2].copy(), kp[..., 2]
    sh = xy[:, 11:13]  # shoulders
    ok = (pres[:, 11] > 0.5) & (pres[:, 12] > 0.5)
    if ok.any():
        center = sh[ok].mean(1).mean(0)
        scale = np.linalg.norm(sh[ok, 0] - sh[ok, 1], axis=-1).mean()
    else:
        center, scale = np.array([0.5, 0.5]), 0.3
    scale = max(scale, 1e-3)
    body = (xy - center) / scale
    lh, rh = pres[:, POSE] > 0, pres[:, POSE + 21] > 0
    body[:, POSE : POSE + 21][~lh] = 0
    body[:, POSE + 21 :][~rh] = 0
    lshape = (body[:, POSE : POSE + 21] - body[:, POSE : POSE + 1]) * 3 * lh[:, None, None]
    rshape = (body[:, POSE + 21 :] - body[:, POSE + 21 : POSE + 22]) * 3 * rh[:, None, None]
    return np.concatenate(
        [
            body.reshape(len(kp), -1),
            lshape.reshape(len(kp), -1),
            rshape.reshape(len(kp), -1),
            lh[:, None],
            rh[:, None],
        ],
        1,
    ).astype(np.float32)


def load(store, aug_views):
    xs, ys, ls, _vids = [], [], [], []
    for i, vid in enumerate(store.video_ids):
        kp = np.load(kpdir / f"{vid}.npy")
        k = kp_features(kp)
        views = []
        for v in range(store.views):
            n = int(store.lengths[i * store.views + v])
            cnn = np.asarray(store.features[i * store.views + v], dtype=np.float32)
            m = min(n, len(k))
            if mode == "kp":
                f = np.zeros((30, k.shape[1]), np.float32)
                f[:m] = k[:m]
            elif mode == "cnn":
                f = cnn
            else:  # both, late
                f = np.zeros((30, 1280 + k.shape[1]), np.float32)
                f[:n, :1280] = cnn[:n]
                f[:m, 1280:] = k[:m]
            views.append(f)
        xs.append(np.stack(views))
        ys.append(label[vid])
        ls.append(
            min(int(store.lengths[i * store.views]), len(k))
            if mode != "cnn"
            else int(store.lengths[i * store.views])
        )
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys), torch.tensor(ls)


t0 = time.time()
xtr, ytr, ltr = load(tr, True)
xva, yva, lva = load(va, False)
xva = xva[:, 0]
torch.manual_seed(seed)


class Dim(nn.Module):
    def __init__(s, d):
        super().__init__()
        s.out_dim = d


hidden = int(extra.get("hidden", 256))


def mk(d, fd):
    return SignClassifier(
        100,
        Dim(d),
        lstm_hidden=hidden,
        pooling="attention",
        dropout=float(extra.get("dropout", 0.5)),
        feature_dropout=fd,
    )


if mode == "late":

    class Late(nn.Module):
        def __init__(s):
            super().__init__()
            s.kp = mk(xtr.shape[-1] - 1280, float(extra.get("fdrop", 0.2)))
            s.cnn = mk(1280, float(extra.get("cnn_fdrop", 0.2)))

        def classify(s, x, lengths):
            return s.kp.classify(x[..., 1280:], lengths) + float(
                extra.get("cnn_w", 1.0)
            ) * s.cnn.classify(x[..., :1280], lengths)

    net = Late()
else:
    net = mk(xtr.shape[-1], float(extra.get("fdrop", 0.2)))
epochs = int(extra.get("epochs", 100))
opt = torch.optim.AdamW(
    net.parameters(), lr=float(extra.get("lr", 1e-3)), weight_decay=float(extra.get("wd", 0.05))
)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
kpd = xtr.shape[-1] - (1280 if mode in ("both", "late") else 0)
jit = float(extra.get("jitter", 0.1))
best, best5, best_ep = 0, 0, 0
g = torch.Generator().manual_seed(seed)
for ep in range(epochs):
    net.train()
    perm = torch.randperm(len(ytr), generator=g)
    views = torch.randint(xtr.shape[1], (len(ytr),), generator=g)
    for s in range(0, len(perm), 16):
        b = perm[s : s + 16]
        x = xtr[b, views[b]].clone()
        if mode != "cnn" and jit > 0:  # random scale and shift of the keypoint block
            kp = x[..., -kpd:]
            kp.mul_(1 + jit * (2 * torch.rand(len(b), 1, 1, generator=g) - 1))
            kp.add_(jit * torch.randn(len(b), 1, kpd, generator=g) * 0.1)
        loss = F.cross_entropy(net.classify(x, ltr[b]), ytr[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()
    net.eval()
    with torch.no_grad():
        lo = net.classify(xva, lva)
    top1 = (lo.argmax(1) == yva).float().mean().item() * 100
    top5 = (lo.topk(5, 1).indices == yva[:, None]).any(1).float().mean().item() * 100
    if top1 > best:
        best, best5, best_ep = top1, top5, ep
    if ep - best_ep > 20:
        break
print(
    json.dumps(
        {
            "mode": mode,
            "seed": seed,
            "extra": extra,
            "val_top1": round(best, 1),
            "val_top5": round(best5, 1),
            "epoch": best_ep,
            "s": round(time.time() - t0),
        }
    ),
    flush=True,
)
