"""Where a training step's time goes (issue 16): torch.profiler over slr's peer-bench steps.

python experiments/speed/profile_steps.py {train|infer|cached} B T SIZE ['OPTIONS_JSON']
"""

from __future__ import annotations

import json
import sys

from torch.profiler import ProfilerActivity, profile

from slr.peers.worker import SlrBackend

ARCH = dict(
    num_classes=2000, lstm_hidden=512, lstm_layers=1, bidirectional=False, dropout=0.3,
    feature_dropout=0.1, feature_norm=True,
)  # fmt: skip


def main() -> None:
    kind, b, t, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    call = SlrBackend(2).build(kind, b, t, size, ARCH, options, 1e-4, 0.01)
    for _ in range(3):
        call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            call()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
