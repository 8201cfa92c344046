"""The parity reference is computed once per weights and case set: in the process and on disk."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import edgesam_deploy
from edgesam_deploy.parity import engine, reference_cache
from edgesam_deploy.parity.engine import Reference


@pytest.fixture
def computed(monkeypatch, tmp_path: Path) -> list[str]:
    """A private cache folder, an empty process cache, and the photos the model really ran on."""
    monkeypatch.setenv("EDGESAM_DEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(reference_cache.SWITCH_ENV, raising=False)
    reference_cache.forget()
    calls: list[str] = []
    real = engine.Reference.compute_photo

    def counting(self: Reference, case: engine.ImageCase) -> list[engine.PromptCase]:
        calls.append(case.name)
        return real(self, case)

    monkeypatch.setattr(engine.Reference, "compute_photo", counting)
    yield calls
    reference_cache.forget()


def _outputs(reference: Reference) -> list[np.ndarray]:
    """Every array the reference judges with, in a fixed order."""
    out = []
    for case in reference.cases:
        out.append(case.ref_embeddings)
        for p in [*case.prompts, *reference.refinements[case.name]]:
            out += [p.ref_logits, p.ref_masks, *(p.ref_scores[k] for k in sorted(p.ref_scores))]
    return out


def test_export_parity_bench_compute_the_reference_once(computed, tmp_path: Path):
    """One process, three commands through the API: each photo's reference is computed once."""
    out = tmp_path / "export"
    exported = edgesam_deploy.export(out, "onnx", precision="fp32", random_weights=0)
    assert exported.passed
    assert edgesam_deploy.parity(out).passed
    report = edgesam_deploy.bench(out, "host", runs=1, warmup=0, threads=1, reference=False)
    assert all(a.parity is not None and a.parity.passed for a in report.artifacts)
    assert sorted(computed) == sorted(engine.PARITY_PHOTOS)


def test_disk_cache_is_keyed_by_weights_and_never_trusted_blindly(computed, random_model):
    first = Reference(random_model, ["coffee"])
    expected = _outputs(first)
    assert computed == ["coffee"]
    [stored] = list(reference_cache.folder().glob("*.npz"))

    reference_cache.forget()  # a new process: read from disk, identical arrays
    again = _outputs(Reference(random_model, ["coffee"]))
    assert computed == ["coffee"]
    assert all(np.array_equal(a, b) for a, b in zip(expected, again, strict=True))

    data = bytearray(stored.read_bytes())  # flip bytes inside an array: the digest differs
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    stored.write_bytes(bytes(data))
    reference_cache.forget()
    repaired = _outputs(Reference(random_model, ["coffee"]))
    assert computed == ["coffee", "coffee"]
    assert all(np.array_equal(a, b) for a, b in zip(expected, repaired, strict=True))
    stored.write_bytes(b"not a zip file")  # unreadable: recomputed and rewritten whole
    reference_cache.forget()
    assert Reference(random_model, ["coffee"]).cases
    assert computed == ["coffee"] * 3
    reference_cache.forget()
    assert Reference(random_model, ["coffee"]).cases
    assert computed == ["coffee"] * 3

    changed = copy.deepcopy(random_model)
    with torch.no_grad():
        changed.mask_decoder.iou_prediction_head.layers[0].bias[0] += 1e-3
    assert reference_cache.weights_digest(changed) != reference_cache.weights_digest(random_model)
    assert Reference(changed, ["coffee"]).cases
    assert computed == ["coffee"] * 4
    assert len(list(reference_cache.folder().glob("*.npz"))) == 2


def test_cache_can_be_bypassed(computed, monkeypatch, random_model):
    assert Reference(random_model, ["camera"], cache=False).cases
    monkeypatch.setenv(reference_cache.SWITCH_ENV, "off")
    assert Reference(random_model, ["camera"]).cases
    assert computed == ["camera", "camera"]
    assert not reference_cache.folder().exists()
