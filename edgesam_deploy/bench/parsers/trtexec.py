"""TensorRT ``trtexec`` performance summary -> throughput and latency statistics (ms)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUM = r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_THROUGHPUT = re.compile(rf"Throughput: ({_NUM}) qps")
# "Latency: min = 5.38 ms, max = 13.3 ms, mean = ..., percentile(90%) = 10.2 ms"; some pastes lose
# the '='
_SECTION = re.compile(r"(Latency|Enqueue Time|H2D Latency|GPU Compute Time|D2H Latency): (.*)")
_ITEM = re.compile(rf"(min|max|mean|median|percentile\((\d+)%\))\s*=?\s*({_NUM}) ms")
_KEYS = {
    "Latency": "latency",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
}


@dataclass
class TrtexecResult:
    """``sections``: latency / gpu_compute / enqueue / h2d / d2h -> {min, max, mean, median, p90, p99 ...} in ms."""

    throughput_qps: float | None = None
    sections: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.throughput_qps is not None and "latency" in self.sections


def parse(text: str) -> TrtexecResult:
    """Parse the '=== Performance summary ===' part of trtexec's output."""
    out = TrtexecResult()
    summary = text.split("=== Performance summary ===", 1)[-1]
    for line in summary.splitlines():
        if m := _THROUGHPUT.search(line):
            out.throughput_qps = float(m[1])
        for m in _SECTION.finditer(line):
            values = {}
            for item in _ITEM.finditer(m[2].split(" s ")[0]):
                values[f"p{item[2]}" if item[2] else item[1]] = float(item[3])
            out.sections.setdefault(_KEYS[m[1]], values)
    return out
