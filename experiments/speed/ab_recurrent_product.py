"""The cached training step (B=4, T=30, LSTM 512, 2000 classes) with each way of forming the
LSTM forward loop's recurrent product forced in turn, and with the measured choice, interleaved
in one process (experiments/speed/README.md, "On the issue's machine kind"):

    python experiments/speed/ab_recurrent_product.py [ROUNDS] [SECONDS]
"""

import slr  # noqa: F401, I001  (first: its OpenMP wait policy, as every slr command runs)

# isort: split
import sys

from slr.models import recurrence
from slr.peers.worker import Case, SlrBackend

ARCH = dict(
    num_classes=2000, lstm_hidden=512, lstm_layers=1, bidirectional=False, dropout=0.3,
    feature_dropout=0.1, feature_norm=True,
)  # fmt: skip


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    measured = recurrence.fastest_product
    case = Case(SlrBackend(2).build("cached", 4, 30, None, ARCH, {}, 1e-4, 0.01), 1.0)
    for _ in range(3):
        case.call()
    print("measured costs (set-up s, per step s):", recurrence._COSTS, flush=True)
    ways = [*recurrence.product_ways(), "measured"]
    for r in range(rounds):
        rates = {}
        for way in ways:
            recurrence.fastest_product = measured if way == "measured" else lambda *a, w=way: w
            rates[way] = round(case.rate(seconds), 2)
        print(f"round {r}: steps/s {rates}", flush=True)


if __name__ == "__main__":
    main()
