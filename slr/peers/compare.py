"""slr against a peer implementation of the same network (`python -m slr.bench peer=keras`): each
implementation runs in its own worker process (slr.peers.worker); every case is timed
round-robin, one worker computing at a time, and reported as medians and slr/peer ratios."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slr.benchmarks.timing import spread
from slr.peers.worker import PEER_INSTALL

log = logging.getLogger(__name__)

# what each framework's worker imports, to fail before starting anything when it is missing
MODULES = {
    "slr": ("torch",),
    "keras2": ("tensorflow", "tf_keras"),
    "keras3": ("tensorflow", "keras"),
}
UNITS = {"train": "steps/s", "infer": "clips/s", "cached": "steps/s"}
LIVE_TRAIN = "train_224"  # the live step the cached one is compared against


class PeerError(RuntimeError):
    """A peer that cannot be run: missing packages, or a worker that failed."""


def require_modules(python: str, frameworks: list[str]) -> None:
    """Raise PeerError naming what `python` cannot import, and how to install it."""
    wanted = sorted({m for f in frameworks for m in MODULES[f]})
    probe = (
        "import importlib.util, sys; "
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    done = subprocess.run([python, "-c", probe, *wanted], capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerError(f"peer.python={python} could not be run: {done.stderr.strip()}")
    missing = done.stdout.split()
    if missing:
        raise PeerError(
            f"{' and '.join(frameworks)} need {', '.join(missing)}, which {python} cannot import. "
            f"Install the optional peer extra into that environment: {PEER_INSTALL}"
        )


class Worker:
    """One implementation's process, spoken to in JSON lines."""

    def __init__(self, name: str, framework: str, python: str, threads: int, log_dir: Path):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("TF_USE_LEGACY_KERAS", None)
        if framework == "keras2":
            env["TF_USE_LEGACY_KERAS"] = "1"  # tf.keras is then Keras 2 (tf-keras)
        self.name, self.log_path = name, log_dir / f"{name}.log"
        self.log_file = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [python, "-m", "slr.peers.worker", framework, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            env=env,
            text=True,
            bufsize=1,
        )

    def send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")

    def receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise PeerError(
                f"worker {self.name} exited with code {self.proc.returncode}; its log "
                f"{self.log_path} ends with:\n{tail(self.log_path)}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise PeerError(f"worker {self.name}: {answer['error']} (log: {self.log_path})")
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log_file.close()


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def median_rates(rates: Mapping[str, Mapping[str, list[float]]]) -> dict[str, dict[str, float]]:
    """{case: {impl: [rate per repeat]}} -> {case: {impl: median rate}}."""
    return {c: {i: statistics.median(r) for i, r in per.items()} for c, per in rates.items()}


def ratios(
    medians: Mapping[str, Mapping[str, float]], peers: list[str], live_train: str = LIVE_TRAIN
) -> dict[str, dict[str, float]]:
    """slr's rate over each peer's, per case, and over the fastest peer ("best"); for the cached
    case also against each peer's live training step rate ("cached_vs_live")."""
    out: dict[str, dict[str, float]] = {}

    def against(slr: float, theirs: Mapping[str, float]) -> dict[str, float]:
        r = {p: slr / theirs[p] for p in peers}
        r["best"] = slr / max(theirs[p] for p in peers)
        return r

    for case, rate in medians.items():
        out[case] = against(rate["slr"], rate)
    if "cached" in medians and live_train in medians:
        out["cached_vs_live"] = against(medians["cached"]["slr"], medians[live_train])
    return out


def targets_met(
    ratio: Mapping[str, Mapping[str, float]], kinds: Mapping[str, str], live: float, cached: float
) -> dict[str, bool]:
    """Every live case (train or infer) beats the fastest peer by `live`x; cached features beat
    the fastest peer's live training step by `cached`x."""
    met = {c: ratio[c]["best"] >= live for c, kind in kinds.items() if kind != "cached"}
    if "cached_vs_live" in ratio:
        met["cached_vs_live"] = ratio["cached_vs_live"]["best"] >= cached
    return met


def round_ratios(
    rates: Mapping[str, Mapping[str, list[float]]], peers: list[str], live_train: str = LIVE_TRAIN
) -> dict[str, list[float]]:
    """slr / fastest peer within each round of the timing (repeat k of every implementation ran
    back to back), per case, and for "cached_vs_live" slr's cached repeat k over the fastest
    peer's live train repeat k: how much the ratio itself moved within one run."""

    def per_round(ours: list[float], theirs: Mapping[str, list[float]]) -> list[float]:
        return [a / max(theirs[p][k] for p in peers) for k, a in enumerate(ours)]

    out = {case: per_round(r["slr"], r) for case, r in rates.items()}
    if "cached" in rates and live_train in rates:
        out["cached_vs_live"] = per_round(rates["cached"]["slr"], rates[live_train])
    return out


def summarize(
    rates: Mapping[str, Mapping[str, list[float]]],
    cases: Mapping[str, Mapping[str, Any]],
    peers: list[str],
    targets: Mapping[str, float],
) -> dict:
    """Medians, ratios and targets from the raw per-repeat rates, and their spread: `spread`
    (each case's and implementation's min / median / max rate) and `ratio_spread` (slr / fastest
    peer per round of repeats, min / median / max)."""
    medians = median_rates(rates)
    ratio = ratios(medians, peers)
    kinds = {c: cases[c]["kind"] for c in medians}
    return {
        "cases": {
            c: {"unit": UNITS[cases[c]["kind"]], **{k: round(v, 4) for k, v in medians[c].items()}}
            for c in medians
        },
        "ratios": {c: {k: round(v, 3) for k, v in r.items()} for c, r in ratio.items()},
        "spread": {c: {i: spread(r) for i, r in per.items()} for c, per in rates.items()},
        "ratio_spread": {c: spread(r, 3) for c, r in round_ratios(rates, peers).items()},
        "targets": dict(targets),
        "targets_met": targets_met(ratio, kinds, targets["live"], targets["cached_vs_live"]),
    }


def describe(case: Mapping[str, Any]) -> str:
    size = f" {case['image_size']}px" if case["kind"] != "cached" else " features"
    return f"{case['kind']} B={case['batch']} T={case['frames']}{size}"


def table(result: dict, cases: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per case: each implementation's median rate and the slr/peer ratios, then every
    repeat of every rate and slr / fastest peer round by round, with its min and max."""
    impls = [i for i in result["implementations"] if i != "slr"]
    names = ["slr", *impls]
    spreads, ratio_spread = result.get("spread", {}), result.get("ratio_spread", {})
    head = f"{'case':32} {'unit':8}" + "".join(f" {i:>9}" for i in names)
    head += "".join(f" {'slr/' + i:>12}" for i in impls) + f" {'slr/best':>9}  target"
    lines = [f"slr vs {', '.join(impls)} on {result['machine']}"]
    if result.get("options", {}).get("slr"):
        lines.append(f"slr options: {result['options']['slr']}")
    lines.append(head)
    for c, row in result["cases"].items():
        r = result["ratios"][c]
        line = f"{describe(cases[c]):32} {row['unit']:8}"
        line += "".join(f" {row[i]:9.3f}" for i in names)
        line += "".join(f" {r[i]:12.2f}" for i in impls) + f" {r['best']:9.2f}"
        if c in result["targets_met"]:
            mark = "met" if result["targets_met"][c] else "MISSED"
            line += f"  >= {result['targets']['live']} {mark}"
        lines.append(line)
        if c in spreads:  # every repeat, in the order timed; then slr / fastest peer per round
            parts = [f"{i} {' '.join(f'{x:.3f}' for x in spreads[c][i]['repeats'])}" for i in names]
            line = "    repeats: " + " | ".join(parts)
            if c in ratio_spread:
                line += f" | slr/best per round {rounds(ratio_spread[c])}"
            lines.append(line)
    if "cached_vs_live" in result["ratios"]:
        r = result["ratios"]["cached_vs_live"]
        line = f"{'slr cached / peer live train':32} {'':8}" + " " * 10 * len(names)
        line += "".join(f" {r[i]:12.2f}" for i in impls) + f" {r['best']:9.2f}"
        mark = "met" if result["targets_met"]["cached_vs_live"] else "MISSED"
        lines.append(line + f"  >= {result['targets']['cached_vs_live']} {mark}")
        if "cached_vs_live" in ratio_spread:
            lines.append(f"    per round: {rounds(ratio_spread['cached_vs_live'])}")
    return "\n".join(lines)


def rounds(s: Mapping[str, Any]) -> str:
    """ "2.10 1.98 2.41 (min 1.98, max 2.41)": a ratio's value per round and its range."""
    each = " ".join(f"{x:.2f}" for x in s["repeats"])
    return f"{each} (min {s['min']:.2f}, max {s['max']:.2f})"


def compare(
    implementations: Mapping[str, Mapping[str, Any]],
    cases: Mapping[str, Mapping[str, Any]],
    arch: Mapping[str, Any],
    targets: Mapping[str, float],
    python: str | None = None,
    threads: int = 2,
    repeats: int = 3,
    warmup: int = 2,
    min_seconds: float = 2.0,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    log_dir: str = ".",
) -> dict:
    """Time every case on slr and each peer implementation; see the module docstring.

    Args:
        implementations: name -> {framework: slr|keras2|keras3, options: builder kwargs}; the
            one named "slr" is ours, the others are peers.
        cases: name -> {kind: train|infer|cached, batch, frames, image_size}.
        arch: the network's sizes, the same for every implementation.
        python: the interpreter for the peer workers (default: this one).
        repeats, warmup: timed runs per case and implementation (medians), untimed calls first.
        min_seconds: each timed run repeats its call until this much time has passed.
    """
    python = python or sys.executable
    frameworks = [impl["framework"] for impl in implementations.values()]
    require_modules(python, [f for f in frameworks if f != "slr"])
    if "slr" not in implementations:
        raise PeerError("peer.implementations needs an entry named slr")
    for name, impl in implementations.items():  # slr workers run in this interpreter
        ort = (impl.get("options") or {}).get("runtime") == "onnxruntime"
        if impl["framework"] == "slr" and ort and importlib.util.find_spec("onnxruntime") is None:
            raise PeerError(
                f"peer.implementations.{name}.options.runtime=onnxruntime needs onnxruntime: "
                f"{PEER_INSTALL} (or set it to torch)"
            )
    peers = [name for name in implementations if name != "slr"]
    log_dir_path = Path(log_dir)
    log_dir_path.mkdir(parents=True, exist_ok=True)
    workers = {}
    try:
        for name, impl in implementations.items():
            exe = sys.executable if impl["framework"] == "slr" else python
            workers[name] = Worker(name, impl["framework"], exe, threads, log_dir_path)
        versions = {name: w.receive()["version"] for name, w in workers.items()}
        log.info(
            "building and warming up %d cases in %s at once (Keras 3 takes minutes: it "
            "traces one backbone call per frame)",
            len(cases),
            ", ".join(workers),
        )
        # warm-up is not timed, so all workers build at once; timing then runs one at a time
        for case, spec in cases.items():
            for name, w in workers.items():
                options = dict(implementations[name].get("options") or {})
                w.send(
                    {
                        "op": "build",
                        "case": case,
                        **spec,
                        "arch": dict(arch),
                        "options": options,
                        "lr": lr,
                        "weight_decay": weight_decay,
                        "warmup": warmup,
                    }
                )
        for case in cases:
            for name, w in workers.items():
                log.info("%s %s ready after %.0f s", name, case, w.receive()["seconds"])
        rates: dict[str, dict[str, list[float]]] = {c: {n: [] for n in workers} for c in cases}
        for case in cases:
            for w in workers.values():  # one untimed run each: this case's model was built
                w.send({"op": "time", "case": case, "min_seconds": 0.0})  # minutes ago
                w.receive()
            for _ in range(repeats):
                for name, w in workers.items():
                    w.send({"op": "time", "case": case, "min_seconds": min_seconds})
                    rates[case][name].append(w.receive()["rate"])
            log.info(
                "%s: %s", case, {n: round(statistics.median(r), 3) for n, r in rates[case].items()}
            )
    finally:
        for w in workers.values():
            w.close()
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {threads} threads",
        "implementations": versions,
        "options": {
            name: dict(impl.get("options") or {}) for name, impl in implementations.items()
        },
        "repeats": repeats,
        "rates": {
            c: {n: [round(x, 4) for x in r] for n, r in per.items()} for c, per in rates.items()
        },
    }
    return {**result, **summarize(rates, cases, peers, targets)}
