"""The LSTM training pass's small operations, timed one by one (experiments/speed/README.md, "The
cached step, third pass"): the per-step recurrent product (B=4, H=512) on a contiguous transposed
weight, on the transposed view and with MKL's packed GEMM; the transposed copy and the packing
themselves; the same product on a weight that stays in L2; and an elementwise operation over
(T, B, H) state on one thread and on two under slr's passive OpenMP waiting.

    python experiments/speed/probe_recurrent_product.py
"""

import slr  # noqa: F401, I001  (first: its OpenMP wait policy, as every slr command runs)

# isort: split
import time

import torch


def timed(name: str, fn, n: int = 200) -> None:
    for _ in range(10):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    print(f"{name:48s} {1e6 * (time.perf_counter() - start) / n:8.1f} us", flush=True)


def main() -> None:
    b, h = 4, 512
    w = torch.randn(4 * h, h)  # nn.LSTM's weight_hh layout, 4 MB
    state, out = torch.randn(b, h), torch.randn(b, 4 * h)
    w_t = w.t().contiguous()
    small, small_state = torch.randn(256, 1024), torch.randn(b, 256)  # 1 MB: stays in L2
    steps = torch.randn(30, b, h)
    grad = torch.randn(b, 4 * h)  # a step's gate gradients
    for threads in (1, 2):
        torch.set_num_threads(threads)
        print(f"threads {threads}")
        timed("step product, contiguous transposed weight", lambda: out.addmm_(state, w_t))
        timed("step product, transposed view", lambda: out.addmm_(state, w.t()))
        if torch.backends.mkl.is_available():
            packed = torch.ops.mkl._mkl_reorder_linear_weight(w, b)
            timed(
                "step product, MKL packed",
                lambda: torch.ops.mkl._mkl_linear(state, packed, w, None, b),  # noqa: B023
            )
            timed(
                "MKL packing of the weight",
                lambda: torch.ops.mkl._mkl_reorder_linear_weight(w, b),
                30,
            )
            # the backward's g @ W_hh: W_hh^T is the packed "linear" weight
            packed_back = torch.ops.mkl._mkl_reorder_linear_weight(w_t, b)
            timed(
                "backward step product, MKL packed",
                lambda: torch.ops.mkl._mkl_linear(grad, packed_back, w_t, None, b),  # noqa: B023
            )
        timed("backward step product, plain", lambda: state.addmm_(grad, w))
        timed("transposed copy of the weight", lambda: w.t().contiguous(), 30)
        timed("step product, 1 MB weight (L2)", lambda: small_state @ small, 30)
        timed("step product, bf16 weight", lambda: state.bfloat16() @ w_t.bfloat16(), 30)
        timed("elementwise a * (1 - a) over (30, 4, 512)", lambda: steps * (1 - steps))


if __name__ == "__main__":
    main()
