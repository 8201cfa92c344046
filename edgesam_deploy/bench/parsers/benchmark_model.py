"""LiteRT / TensorFlow Lite ``benchmark_model`` output -> timings, memory and delegation.

Works on the plain binary's output and on the Android benchmark app's logcat (lines prefixed
with timestamps and tags); statistics are in microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUM = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_STATS = re.compile(rf"count=(?P<count>\d+)(?P<rest>(?:\s+\w+={_NUM})*)")
_PAIR = re.compile(rf"(\w+)=({_NUM})")
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})"
)
_MEMORY = re.compile(
    r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=(?P<init>{_NUM}) overall=(?P<overall>{_NUM})"
)
_REPLACING = re.compile(
    r"Replacing (?P<n>\d+)(?: out of (?P<m>\d+))? node\(s\) with delegate \((?P<delegate>\w+)\)"
)
_FULL = re.compile(
    r"Explicitly applied (?P<delegate>\w+) delegate, and the model graph will be completely "
    r"executed"
)
_PARTIAL = re.compile(
    r"Explicitly applied (?P<delegate>\w+) delegate, and the model graph will be partially "
    r"executed by the delegate w/ (?P<k>\d+) delegate kernels"
)
_SESSION = re.compile(rf"Initialized session in ({_NUM})ms")
_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUM})")


@dataclass
class RunStats:
    """One ``count=... first=... min=... max=... avg=... std=...`` line, in microseconds."""

    count: int
    values: dict[str, float]

    def ms(self, key: str) -> float | None:
        return self.values[key] / 1e3 if key in self.values else None


@dataclass
class Delegation:
    """What a delegate took: nodes (N of M when reported) or whole-graph / partial statements."""

    delegate: str
    nodes: int | None = None
    total_nodes: int | None = None
    whole_graph: bool | None = None
    kernels: int | None = None


@dataclass
class BenchmarkModelResult:
    """Everything the tool reported; missing items are None."""

    init_ms: float | None = None
    first_inference_ms: float | None = None
    warmup_avg_ms: float | None = None
    inference_avg_ms: float | None = None
    warmup: RunStats | None = None
    steady: RunStats | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    model_size_mb: float | None = None
    delegations: list[Delegation] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether the steady-state statistics were reported (the benchmark finished)."""
        return self.steady is not None and self.inference_avg_ms is not None


def parse(text: str) -> BenchmarkModelResult:
    """Parse one run's output; the first ``count=`` line is the warm-up, the last the steady state."""
    out = BenchmarkModelResult()
    stats: list[RunStats] = []
    for line in text.splitlines():
        if m := _STATS.search(line):
            stats.append(
                RunStats(int(m["count"]), {k: float(v) for k, v in _PAIR.findall(m["rest"])})
            )
        elif m := _TIMINGS.search(line):
            out.init_ms, out.first_inference_ms, out.warmup_avg_ms, out.inference_avg_ms = (
                float(m[k]) / 1e3 for k in ("init", "first", "warmup", "avg")
            )
        elif m := _MEMORY.search(line):
            out.memory_init_mb, out.memory_overall_mb = float(m["init"]), float(m["overall"])
        elif m := _REPLACING.search(line):
            out.delegations.append(
                Delegation(m["delegate"], int(m["n"]), int(m["m"]) if m["m"] else None)
            )
        elif m := _FULL.search(line):
            out.delegations.append(Delegation(m["delegate"], whole_graph=True))
        elif m := _PARTIAL.search(line):
            out.delegations.append(
                Delegation(m["delegate"], whole_graph=False, kernels=int(m["k"]))
            )
        elif m := _SESSION.search(line):
            out.init_ms = out.init_ms or float(m[1])
        elif m := _SIZE.search(line):
            out.model_size_mb = float(m[1])
    if stats:
        out.steady = stats[-1]
        out.warmup = stats[0] if len(stats) > 1 else None
    return out
