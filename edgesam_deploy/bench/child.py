"""One measurement in a fresh process, so that load time, time to first mask and the memory
high-water mark belong to that artifact alone.

Protocol: a JSON job on stdin, one JSON line on stdout. Jobs:
``{"kind": "artifact", "spec": S, ...}`` and ``{"kind": "pipeline", "encoder": S, "decoder": S, ...}``
with ``root``, ``runs``, ``warmup``, ``threads``; S is a manifest record (as a dict) or
``{"reference": "encoder" | "decoder", "state_dict": PATH}`` for the PyTorch reference.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..runtimes import GraphSession
from ..vocabulary import Role
from .metrics import Inputs, measure_decoder, measure_encoder, measure_pipeline, peak_rss_mib
from .schema import DECODER_1


def _open(spec: dict[str, Any], root: Path, threads: int | None) -> GraphSession:
    if "reference" in spec:
        import torch

        from ..graphs import DecoderGraph, EncoderGraph
        from ..modeling import EdgeSam
        from ..runtimes.torch_ref import TorchSession

        model = EdgeSam("bilinear")
        model.load_state_dict(
            torch.load(spec["state_dict"], map_location="cpu", weights_only=True), strict=True
        )
        role = spec["reference"]
        graph = (
            EncoderGraph(model.eval(), fold=False)
            if role == Role.ENCODER
            else DecoderGraph(model.eval())
        )
        return TorchSession(graph, role, threads=threads)
    from .sessions import open_local

    return open_local(ArtifactRecord(**spec), root, threads)


def _role(spec: dict[str, Any]) -> str:
    return spec.get("reference") or spec["role"]


def measure_artifact(job: dict[str, Any]) -> dict[str, Any]:
    """Load time, latency statistics, clicks per second and memory of one artifact."""
    inputs = Inputs()
    baseline = peak_rss_mib()
    start = time.perf_counter()
    session = _open(job["spec"], Path(job["root"]), job["threads"])
    load_ms = (time.perf_counter() - start) * 1e3
    out: dict[str, Any] = {
        "load_ms": load_ms,
        "runtime": session.runtime,
        "runtime_details": session.describe(),
    }
    if _role(job["spec"]) == Role.ENCODER:
        out["latency"] = measure_encoder(session, inputs, job["runs"], job["warmup"])
    else:
        out["latency"], out["clicks_per_s"], skipped = measure_decoder(
            session, inputs, job["runs"], job["warmup"]
        )
        if skipped:
            out["extra"] = {"not_measured": skipped}
    out["peak_rss_mib"] = peak_rss_mib()
    out["rss_delta_mib"] = out["peak_rss_mib"] - baseline
    return out


def measure_pair(job: dict[str, Any]) -> dict[str, Any]:
    """Cold time to first mask (load both, encode, decode one click), then end-to-end frames."""
    inputs = Inputs()
    root, threads = Path(job["root"]), job["threads"]
    start = time.perf_counter()
    encoder = _open(job["encoder"], root, threads)
    decoder = _open(job["decoder"], root, threads)
    emb = encoder.run(inputs.image)["image_embeddings"]
    decoder.run(inputs.prompt(DECODER_1, emb, decoder.graph))
    first_ms = (time.perf_counter() - start) * 1e3
    stats = measure_pipeline(encoder, decoder, inputs, job["runs"], job["warmup"])
    return {"time_to_first_mask_ms": first_ms, "end_to_end": stats, "fps": 1e3 / stats.p50}


def main() -> int:
    job = json.loads(sys.stdin.read())
    try:
        result = measure_artifact(job) if job["kind"] == "artifact" else measure_pair(job)
    except DeployError as exc:
        print(json.dumps({"error": str(exc)}))
        return 0
    print(json.dumps(result, default=lambda o: o.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
