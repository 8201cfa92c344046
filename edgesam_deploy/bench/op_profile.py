"""ONNX Runtime's own per-op profile of a model (``SessionOptions.enable_profiling``)."""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path

import numpy as np


def ort_op_profile(
    path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 3, top: int = 0
) -> dict[str, dict[str, float]]:
    """Mean ms per run in each op type (after ORT's graph fusions), and with ``top`` > 0 the
    ``top`` slowest nodes: {"by_op_type": {...}, "by_node": {...}}."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_type: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_type[e["args"]["op_name"]] += e["dur"] / 1000 / runs
            by_node[e["name"].removesuffix("_kernel_time")] += e["dur"] / 1000 / runs
    out = {"by_op_type": {op: round(ms, 2) for op, ms in by_type.most_common()}}
    if top:
        out["by_node"] = {name: round(ms, 2) for name, ms in by_node.most_common(top)}
    return out
