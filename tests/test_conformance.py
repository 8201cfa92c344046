"""Our EdgeSAM against the official implementation's vectors (tests/data/conformance, copied from ../shared)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgesam_deploy.graphs import DecoderGraph
from edgesam_deploy.modeling import EdgeSam, reparameterize_encoder
from edgesam_deploy.modeling.decoder_fast import AttentionForm
from edgesam_deploy.processing import (
    Prompt,
    decoder_inputs,
    masks_from_logits,
    postprocess_logits,
    preprocess,
)

from conftest import CONFORMANCE_ENV, REPO, state_dict_from

TOL = 1e-4  # the conformance README: float32 reimplementation within 1e-4 absolute
CASES = ("one_point", "three_points", "box", "box_point")


def _prompt(z: dict, case: str) -> Prompt:
    p = Prompt()
    if f"prompt/{case}/point_coords" in z:
        p.points = [tuple(map(float, xy)) for xy in z[f"prompt/{case}/point_coords"]]
        p.labels = [int(v) for v in z[f"prompt/{case}/point_labels"]]
    if f"prompt/{case}/box" in z:
        p.box = tuple(map(float, z[f"prompt/{case}/box"]))
    return p


@pytest.fixture(scope="module")
def embeddings(conformance, conformance_model) -> dict[str, torch.Tensor]:
    x = torch.from_numpy(conformance["encoder_input"])
    out = {}
    enc = conformance_model.image_encoder
    for mode in ("bicubic", "bilinear"):
        enc.set_upsample_mode(mode)
        out[mode] = conformance_model.encode(x)
    enc.set_upsample_mode("bilinear")
    with torch.no_grad():
        out["folded"] = reparameterize_encoder(enc)(x)
    return out


def test_state_dict_loads_strictly(conformance):
    model = EdgeSam()
    sd = state_dict_from(conformance)
    assert len(sd) == 821
    assert set(model.state_dict()) == set(sd)
    model.load_state_dict(sd, strict=True)


def test_preprocessing_matches(conformance):
    pre = preprocess(conformance["image"])
    assert pre.input_size == tuple(int(v) for v in conformance["input_size"])
    np.testing.assert_allclose(pre.tensor, conformance["encoder_input"], atol=1e-6)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_embeddings(conformance, embeddings, mode):
    ref = conformance[f"{mode}/image_embeddings"]
    assert np.abs(embeddings[mode].numpy() - ref).max() <= TOL


def test_folded_encoder_embeddings(conformance, embeddings):
    assert (
        np.abs(embeddings["folded"].numpy() - conformance["bilinear/image_embeddings"]).max() <= TOL
    )


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("case", CASES)
def test_decoder_outputs(conformance, conformance_model, embeddings, mode, case):
    pre = preprocess(conformance["image"])
    coords, labels = decoder_inputs(_prompt(conformance, case), pre.original_size, pre.input_size)
    emb = embeddings[mode]
    for n in (1, 3, 4):
        logits, iou, stab = conformance_model.decode(
            emb, torch.from_numpy(coords), torch.from_numpy(labels), num_masks=n
        )
        assert (
            np.abs(iou[0].numpy() - conformance[f"{mode}/{case}/n{n}/iou_predictions"]).max() <= TOL
        )
    assert np.abs(logits[0].numpy() - conformance[f"{mode}/{case}/n4/low_res_logits"]).max() <= TOL
    # a stability count may flip where a logit is within TOL of +-1: one pixel in 65536 at most
    assert np.abs(stab[0].numpy() - conformance[f"{mode}/{case}/n4/stability_scores"]).max() <= 1e-4
    if mode == "bilinear":
        full = postprocess_logits(logits[0].numpy(), pre.input_size, pre.original_size)
        ref = conformance[f"bilinear/{case}/n4/masks"]
        differ = masks_from_logits(full) != ref
        assert np.all(np.abs(full[differ]) <= TOL), "masks differ where the logit is not near 0"


@pytest.mark.parametrize("rewrite", [None, *AttentionForm])  # the reference and the rewrites
@pytest.mark.parametrize("kind", ["iou", "stability"])
@pytest.mark.parametrize("case", CASES)
def test_decoder_graph_contract(conformance, conformance_model, kind, case, rewrite):
    graph = DecoderGraph(conformance_model, kind, rewrite=rewrite).eval()
    prefix = f"decoder_graph/{kind}/{case}"
    with torch.no_grad():
        scores, masks = graph(
            torch.from_numpy(conformance["bilinear/image_embeddings"]),
            torch.from_numpy(conformance[f"{prefix}/point_coords"]),
            torch.from_numpy(conformance[f"{prefix}/point_labels"]),
        )
    assert np.abs(scores.numpy() - conformance[f"{prefix}/scores"]).max() <= TOL
    assert np.abs(masks.numpy() - conformance[f"decoder_graph/iou/{case}/masks"]).max() <= TOL


def test_perturbed_weight_is_caught(conformance):
    """One weight changed by 0.01 must break conformance: the tests above can fail."""
    model = EdgeSam("bilinear")
    sd = state_dict_from(conformance)
    key = "image_encoder.neck.2.weight"
    sd[key] = sd[key].clone()
    sd[key][5, 7, 1, 1] += 0.01
    model.load_state_dict(sd, strict=True)
    emb = model.eval().encode(torch.from_numpy(conformance["encoder_input"]))
    assert np.abs(emb.numpy() - conformance["bilinear/image_embeddings"]).max() > 10 * TOL


def test_missing_vectors_fail_not_skip(tmp_path):
    """Without the vectors the conformance tests FAIL with the expected path in the message."""
    env = {**os.environ, CONFORMANCE_ENV: str(tmp_path / "absent.npz")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{REPO}/tests/test_conformance.py::test_state_dict_loads_strictly",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stdout
    assert "absent.npz" in proc.stdout and "skipped" not in proc.stdout


def test_repository_copies_match_shared():
    """The vectors the tests use are kept in the repository; where ../shared is beside it (CI),
    each copy must equal the shared original and every shared file must have a copy."""
    from conftest import CONFORMANCE_DIR, REPO

    shared = REPO.parent / "shared" / "conformance"
    if not shared.is_dir():
        pytest.skip("no ../shared/conformance beside this clone (the repository copies are used)")
    for original in sorted(shared.iterdir()):
        copy = CONFORMANCE_DIR / original.name
        assert copy.is_file(), f"{original.name} is in ../shared but not in tests/data/conformance"
        assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}"


MASK_CASES = ("refine_point", "refine_box")


@pytest.fixture(scope="module")
def maskinput() -> dict[str, np.ndarray]:
    """The official predictor's two-click refinement vectors; missing FAILS (never skips)."""
    from conftest import CONFORMANCE_DIR

    path = CONFORMANCE_DIR / "edgesam_seed0_maskinput.npz"
    if not path.is_file():
        pytest.fail(f"mask-input conformance vectors not found at {path}", pytrace=False)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _second_prompt(maskinput, conformance, case: str) -> tuple[np.ndarray, np.ndarray]:
    """The second click of ``case`` as decoder inputs (1024 frame, padding point or box corners)."""
    pre = preprocess(conformance["image"])
    p = f"maskinput/{case}/second"
    box = tuple(maskinput[f"{p}/box"]) if f"{p}/box" in maskinput else None
    prompt = Prompt(
        [tuple(c) for c in maskinput[f"{p}/point_coords"]],
        [int(v) for v in maskinput[f"{p}/point_labels"]],
        box,
    )
    return decoder_inputs(prompt, pre.original_size, pre.input_size)


@pytest.mark.parametrize("case", MASK_CASES)
def test_mask_input_refinement(conformance, conformance_model, maskinput, case):
    """The model's second click with the first answer's logits as mask_input equals the official
    predictor's (low-res logits within 1e-4), and is not today's answer."""
    coords, labels = _second_prompt(maskinput, conformance, case)
    emb = torch.from_numpy(conformance["bilinear/image_embeddings"])
    mask = torch.from_numpy(maskinput[f"maskinput/{case}/mask_input"])[None]
    logits, iou, _ = conformance_model.decode(
        emb, torch.from_numpy(coords), torch.from_numpy(labels), mask_input=mask
    )
    ref = maskinput[f"maskinput/{case}/n4/low_res_logits"]
    assert np.abs(logits[0].numpy() - ref).max() <= TOL
    assert np.abs(iou[0].numpy() - maskinput[f"maskinput/{case}/n4/iou_predictions"]).max() <= TOL
    without = maskinput[f"maskinput/{case}/without_mask_input/n4/low_res_logits"]
    assert np.abs(ref - without).max() > 100 * TOL  # the mask input is not a no-op


@pytest.mark.parametrize("case", MASK_CASES)
def test_mask_input_decoder_graph(conformance, conformance_model, maskinput, case):
    """The exported decoder with mask inputs: has_mask_input 1 reproduces the refinement, 0 gives
    the decoder without a mask (the official second prediction without mask_input)."""
    coords, labels = _second_prompt(maskinput, conformance, case)
    graph = DecoderGraph(conformance_model, mask_input=True)
    emb = torch.from_numpy(conformance["bilinear/image_embeddings"])
    mask = torch.from_numpy(maskinput[f"maskinput/{case}/mask_input"])[None]
    prefix = f"maskinput/{case}"
    for has, key in (
        (1.0, f"{prefix}/n4/low_res_logits"),
        (0.0, f"{prefix}/without_mask_input/n4/low_res_logits"),
    ):
        with torch.no_grad():
            _, masks = graph(
                emb, torch.from_numpy(coords), torch.from_numpy(labels), mask, torch.tensor([has])
            )
        assert np.abs(masks[0].numpy() - maskinput[key]).max() <= TOL, (case, has)
