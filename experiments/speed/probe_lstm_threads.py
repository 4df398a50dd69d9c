"""The cached training step (LSTM + head on (B, T, 1280) features, fused AdamW) under the OpenMP
settings of the issue 16 notes: run once per setting, each in a fresh process, because OpenMP
reads its environment when torch loads.

  python experiments/speed/probe_lstm_threads.py nn 4 512 last 2000       # nn.LSTM (oneDNN)
  python experiments/speed/probe_lstm_threads.py fused 4 512 last 2000    # slr.models.recurrence
  GOMP_SPINCOUNT=10000 python experiments/speed/probe_lstm_threads.py fused 4 512 last 2000

Arguments: path (nn | fused), batch, LSTM hidden, pooling, classes. Prints steps/s of two timed
runs of at least 2 s each. A competing process for the contended rows:
`python -c "while True: pass" &`.
"""

# isort: off
import slr  # noqa: F401  (before torch: sets OMP_WAIT_POLICY as every slr command does)
import sys

import torch
import torch.nn.functional as F

# isort: on
from slr.models import recurrence
from slr.models.encoder import FrameEncoder
from slr.models.mobilenet_lstm import SignClassifier
from slr.peers.worker import Case

path, pooling = sys.argv[1], sys.argv[4]
batch, hidden, classes = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
torch.set_num_threads(2)
torch.manual_seed(0)
net = SignClassifier(
    classes, FrameEncoder(weights=None), lstm_hidden=hidden, pooling=pooling,
    dropout=0.3, feature_dropout=0.1,
).train()  # fmt: skip
optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], fused=True)
features, lengths = torch.randn(batch, 30, 1280), torch.full((batch,), 30)
labels = torch.randint(classes, (batch,))
if path == "nn":
    recurrence.supports = lambda *args: False


def step() -> None:
    loss = F.cross_entropy(net.classify(features, lengths), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


step()
step()
print(sys.argv[1:], [round(Case(step, 1).rate(2.0), 1) for _ in range(2)])
