"""slr: isolated sign-language recognition on WLASL with a frozen MobileNetV2 + LSTM."""

import os

# libgomp's default spin-waiting collapses torch's CPU throughput (MobileNetV2: 140 -> 5 frames/s
# measured on 2 cores) whenever another process, such as a DataLoader worker decoding video, wants
# a core. Sleeping idle OpenMP threads costs little without contention. Set on import because it
# must precede `import torch`; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
