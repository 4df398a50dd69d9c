"""An LSTM layer's training pass for the CPU with its weight gradients in single matrix products.

On the CPU, nn.LSTM's backward is oneDNN's RNN kernel (62% of a cached training step in the
profile of experiments/speed) or, without oneDNN, ATen's per-step cells, whose autograd forms
the recurrent weight's gradient one time step at a time: T outer products of (B, H) x (B, 4H),
each written and summed into a (4H, H) buffer, for a batch of a few clips. Here the backward
pass keeps the gates' gradients of every step and then forms the weights' gradients at once:
dW_hh = dG^T @ H_prev and dW_ih = dG^T @ X over all B*T frames, the way cuDNN does. Same
function, same parameters (an nn.LSTM's), same gradients within float32 rounding
(tests/test_recurrence.py); only the training pass uses it.

The step loops, and the elementwise work around them, run on one thread: each step's products
are too small to split, and with OpenMP's passive waiting (slr/__init__.py) waking a second
thread costs more than such an operation takes on one (experiments/speed/README.md). Only the
whole-batch products use every thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch
from torch import nn

PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # nn.LSTM's per layer, `{name}_l{k}`


def supports(rnn: nn.Module, x: torch.Tensor) -> bool:
    """True if `fused_lstm` computes what `rnn` would for this input while training."""
    return (
        isinstance(rnn, nn.LSTM)
        and not rnn.bidirectional
        and rnn.proj_size == 0
        and rnn.bias
        and rnn.batch_first
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.is_grad_enabled()
    )


def fused_lstm(rnn: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """(B, T, D) inputs from a zero state -> (B, T, H) outputs of the last layer, as `rnn(x)[0]`
    (dropout between layers included)."""
    for layer in range(rnn.num_layers):
        if layer and rnn.dropout and rnn.training:
            x = nn.functional.dropout(x, rnn.dropout, training=True)
        w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{layer}") for n in PARAMS)
        x = _LSTMLayer.apply(x, w_ih, w_hh, b_ih, b_hh)
    return x


@contextlib.contextmanager
def one_thread():
    """Intra-op threads down to one for the block, then back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _packed(w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
    # MKL's packed GEMM: the (4H, H) weight packed once per pass for every step's product
    mkl = torch.ops.mkl
    packed = mkl._mkl_reorder_linear_weight(w_hh, batch)
    return lambda h: mkl._mkl_linear(h, packed, w_hh, None, batch)


def _view(w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda h: h @ w_hh.t()  # on the transposed view: the BLAS packs it on every call


def _copy(w_hh: torch.Tensor, batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
    w_hh_t = w_hh.t().contiguous()  # one transposed copy per pass
    return lambda h: h @ w_hh_t


def product_ways() -> dict[str, Callable]:
    """The ways to form the forward loop's h @ w_hh^T, by name; all give the same products
    within float32 rounding."""
    ways = {"view": _view, "copy": _copy}
    if torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear"):
        ways["packed"] = _packed
    return ways


# (H, B, threads) -> {way: (seconds to set up a pass, seconds per step)}, measured once
_COSTS: dict[tuple[int, int, int], dict[str, tuple[float, float]]] = {}


def _measure(make: Callable, w_hh: torch.Tensor, batch: int) -> tuple[float, float]:
    h = w_hh.new_zeros(batch, w_hh.shape[1])
    setup = step = float("inf")
    for _ in range(3):  # best of 3: the machine is shared
        start = time.perf_counter()
        product = make(w_hh, batch)
        made = time.perf_counter()
        with one_thread():
            for _ in range(8):
                product(h)
        setup = min(setup, made - start)
        step = min(step, (time.perf_counter() - made) / 8)
    return setup, step


def fastest_product(w_hh: torch.Tensor, batch: int, steps: int) -> str:
    """The way whose set-up plus `steps` products costs least on this machine. Which one wins
    depends on the CPU's caches and BLAS: MKL's packing pays for itself on the Intel Xeon of
    experiments/speed and costs more than it saves on the AMD EPYC; so it is timed, once per
    weight shape, batch size and thread count in the process (a few ms), not guessed."""
    ways = product_ways()
    key = (w_hh.shape[1], batch, torch.get_num_threads())
    if _COSTS.get(key, {}).keys() != ways.keys():
        with torch.no_grad():
            w = w_hh.detach()
            _COSTS[key] = {name: _measure(make, w, batch) for name, make in ways.items()}
    costs = _COSTS[key]
    return min(costs, key=lambda name: costs[name][0] + steps * costs[name][1])


def _recurrent_product(w_hh: torch.Tensor, batch: int, steps: int):
    """h (B, H) -> h @ w_hh^T (B, 4H), for the `steps` products of the forward loop."""
    return product_ways()[fastest_product(w_hh, batch, steps)](w_hh, batch)


class _LSTMLayer(torch.autograd.Function):
    # state kept time-major, (T, B, ...), so each step's slice is one contiguous block
    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh):
        b, t, d = x.shape
        n = w_hh.shape[1]
        # (B, T, D) -> (T*B, D) @ (D, 4H) -> (T, B, 4H): the inputs' part of every gate at once
        x_tm = x.transpose(0, 1).reshape(t * b, d)
        acts = torch.addmm(b_ih + b_hh, x_tm, w_ih.t()).view(t, b, 4 * n)
        recurrent = _recurrent_product(w_hh, b, t - 1)
        with one_thread():
            cells = x.new_empty(t, b, n)
            out = x.new_empty(t, b, n)
            for step in range(t):
                a = acts[step]  # the step's gates, activated in place: ATen's order i, f, g, o
                if step:  # from the zero state the first step's gates are the inputs' part alone
                    a.add_(recurrent(out[step - 1]))
                a[:, : 2 * n].sigmoid_()
                a[:, 3 * n :].sigmoid_()
                i, f, g, o = a.chunk(4, dim=1)
                g.tanh_()
                if step:
                    torch.addcmul(f * cells[step - 1], i, g, out=cells[step])
                else:
                    torch.mul(i, g, out=cells[step])
                torch.mul(o, torch.tanh(cells[step]), out=out[step])
        ctx.save_for_backward(x_tm, w_ih, w_hh, acts, cells, out)
        return out.transpose(0, 1)  # (T, B, H) -> (B, T, H)

    @staticmethod
    def backward(ctx, grad_out):
        x_tm, w_ih, w_hh, acts, cells, out = ctx.saved_tensors
        t, b, n = out.shape
        with one_thread():
            grad_out = grad_out.transpose(0, 1).contiguous()  # (B, T, H) -> (T, B, H)
            # every factor that needs no recurrence, for all steps at once, (T, B, H) each
            i, f, g, o = acts.chunk(4, dim=2)
            tanh_c = cells.tanh()
            c_prev = torch.cat([cells.new_zeros(1, b, n), cells[:-1]])
            dc_from_dh = o * (1 - tanh_c * tanh_c)
            # dc -> pre-activation di, df, dg (T, B, 3, H); dh -> pre-activation do (T, B, H)
            dc_to_ifg = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=2)
            dh_to_o = tanh_c * o * (1 - o)
            grad_gates = acts.new_empty(t, b, 4 * n)  # dL/d(pre-activation gates) per step
            dc = acts.new_zeros(b, n)
            for step in reversed(range(t)):
                if step == t - 1:
                    dh = grad_out[step]
                else:  # through the next step's gates, and the cell through its forget gate
                    dh = torch.addmm(grad_out[step], grad_gates[step + 1], w_hh)
                    dc = dc * f[step + 1]
                dc = torch.addcmul(dc, dh, dc_from_dh[step])
                gates = grad_gates[step]  # (B, 4H)
                torch.mul(dc.unsqueeze(1), dc_to_ifg[step], out=gates[:, : 3 * n].view(b, 3, n))
                torch.mul(dh, dh_to_o[step], out=gates[:, 3 * n :])
            flat = grad_gates.view(t * b, 4 * n)  # (T, B, 4H) -> (T*B, 4H)
            grad_b = flat.sum(dim=0)
            # h_{t-1} for every step, zeros before the first: (T, B, H) -> (T*B, H)
            h_prev = torch.cat([out.new_zeros(1, b, n), out[:-1]]).view(t * b, n)
        grad_x = None
        if ctx.needs_input_grad[0]:  # (T*B, 4H) @ (4H, D) -> (T, B, D) -> (B, T, D)
            grad_x = (flat @ w_ih).view(t, b, -1).transpose(0, 1)
        grad_w_ih = flat.t() @ x_tm
        grad_w_hh = flat.t() @ h_prev
        return grad_x, grad_w_ih, grad_w_hh, grad_b, grad_b
