"""Click-by-click refinement: the decoder with mask inputs against the official predictor's
two-click vectors, through the ONNX export, the parity gate and ``segment --mask-input``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgesam_deploy.checkpoints import ModelSource
from edgesam_deploy.cli.app import main
from edgesam_deploy.exporters import ExportOptions
from edgesam_deploy.exporters.onnx.options import OnnxOptions
from edgesam_deploy.exporters.pipeline import run_export
from edgesam_deploy.manifest import Manifest
from edgesam_deploy.parity import Reference, check_directory
from edgesam_deploy.processing import Prompt, decoder_inputs, preprocess
from edgesam_deploy.runtimes import open_session
from edgesam_deploy.vocabulary import Role, Target

from conftest import CONFORMANCE_DIR

TOL = 1e-4
CASES = ("refine_point", "refine_box")


@pytest.fixture(scope="module")
def maskinput() -> dict[str, np.ndarray]:
    path = CONFORMANCE_DIR / "edgesam_seed0_maskinput.npz"
    if not path.is_file():
        pytest.fail(f"mask-input conformance vectors not found at {path}", pytrace=False)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def exported(conformance_model, tmp_path_factory) -> Path:
    """fp32 ONNX export with the mask-input decoder and the conformance weights."""
    out = tmp_path_factory.mktemp("mask-input")
    options = ExportOptions.of(OnnxOptions(("fp32",)), mask_input=True, calibration_size=1)
    source = ModelSource(
        "edgesam", "checkpoint", path=str(CONFORMANCE_DIR / "edgesam_seed0_coffee.npz")
    )
    run_export(conformance_model, source, [Target.ONNX], out, options, run_parity=False)
    return out


def _second(maskinput, image: np.ndarray, case: str) -> tuple[Prompt, np.ndarray, np.ndarray]:
    pre = preprocess(image)
    p = f"maskinput/{case}/second"
    box = tuple(float(v) for v in maskinput[f"{p}/box"]) if f"{p}/box" in maskinput else None
    prompt = Prompt(
        [tuple(map(float, c)) for c in maskinput[f"{p}/point_coords"]],
        [int(v) for v in maskinput[f"{p}/point_labels"]],
        box,
    )
    coords, labels = decoder_inputs(prompt, pre.original_size, pre.input_size)
    return prompt, coords, labels


@pytest.mark.parametrize("case", CASES)
def test_onnx_decoder_reproduces_the_official_refinement(exported, conformance, maskinput, case):
    manifest = Manifest.load(exported)
    record = next(a for a in manifest.artifacts if a.role == Role.DECODER)
    assert record.file == "onnx/decoder-mask-input.fp32.onnx" and record.details["mask_input"]
    assert record.graph.input_names[-2:] == ("mask_input", "has_mask_input")
    _, coords, labels = _second(maskinput, conformance["image"], case)
    feeds = {
        "image_embeddings": conformance["bilinear/image_embeddings"],
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": maskinput[f"maskinput/{case}/mask_input"][None],
        "has_mask_input": np.ones(1, np.float32),
    }
    session = open_session(record, exported)
    logits = session.run(feeds)["masks"][0]
    assert np.abs(logits - maskinput[f"maskinput/{case}/n4/low_res_logits"]).max() <= TOL
    feeds["has_mask_input"] = np.zeros(1, np.float32)
    without = session.run(feeds)["masks"][0]
    assert (
        np.abs(without - maskinput[f"maskinput/{case}/without_mask_input/n4/low_res_logits"]).max()
        <= TOL
    )


def test_parity_gate_judges_refinement_cases(exported, conformance_model):
    reference = Reference(conformance_model, photos=["coffee"])
    results = {r.file: r for r in check_directory(exported, conformance_model, reference=reference)}
    decoder = results["onnx/decoder-mask-input.fp32.onnx"]
    assert decoder.passed, decoder.failures
    assert len(reference.refinements["coffee"]) == 2  # two-click cases judged beside the 5 prompts


def test_segment_refines_with_mask_input(conformance, maskinput, tmp_path, conformance_model):
    """``segment --mask-input`` with the official first answer reproduces the official second
    answer's logits (the mask segment keeps: highest stability), written by ``--logits-out``."""
    photo, checkpoint = tmp_path / "coffee.png", tmp_path / "weights.pth"
    Image.fromarray(conformance["image"]).save(photo)
    torch.save(conformance_model.state_dict(), checkpoint)
    case = "refine_box"
    prompt, _, _ = _second(maskinput, conformance["image"], case)
    mask = tmp_path / "previous.npy"
    np.save(mask, maskinput[f"maskinput/{case}/mask_input"])
    args = [
        "segment",
        str(photo),
        "--out",
        str(tmp_path / "o.png"),
        "--checkpoint",
        str(checkpoint),
        "--upsample",
        "bilinear",
        "--num-masks",
        "4",
        "--mask-input",
        str(mask),
        "--logits-out",
        str(tmp_path / "logits.npy"),
    ]
    args += [
        a
        for (x, y), lab in zip(prompt.points, prompt.labels)
        for a in ("--point", f"{x},{y},{lab}")
    ]
    args += ["--box", ",".join(str(v) for v in prompt.box)]
    assert main(args) == 0
    written = np.load(tmp_path / "logits.npy")
    best = int(np.argmax(maskinput[f"maskinput/{case}/n4/stability_scores"]))
    assert written.shape == (1, 256, 256) and written.dtype == np.float32
    assert np.abs(written[0] - maskinput[f"maskinput/{case}/n4/low_res_logits"][best]).max() <= TOL


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((2, 256, 256), np.float32), "shape"),
        (np.zeros((1, 128, 128), np.float32), "shape"),
        (np.zeros((1, 256, 256), np.int32), "floating point"),
        (np.full((256, 256), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_mask_input_is_one_line(tmp_path, capsys, array, message):
    np.save(tmp_path / "m.npy", array)
    assert _segment_with_mask(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "m.npy" in err[0]
    assert not (tmp_path / "o.png").exists()


def test_truncated_mask_file_is_one_line(tmp_path, capsys):
    (tmp_path / "m.npy").write_bytes(b"\x93NUMPY garbage")
    assert _segment_with_mask(tmp_path) == 2
    assert "not a readable .npy" in capsys.readouterr().err


def _huge_header(path: Path) -> None:
    """A .npy header claiming 4 PB of float32 (the file holds no data)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (10**5, 10**5, 10**5)}
        )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "not a readable .npy"),  # numpy: EOFError
        (_huge_header, "shape [100000, 100000, 100000]"),  # numpy: MemoryError
    ],
)
def test_empty_or_huge_mask_file_is_one_line(tmp_path, capsys, make, message):
    make(tmp_path / "m.npy")
    assert _segment_with_mask(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def _segment_with_mask(tmp_path: Path) -> int:
    """``segment`` on a small black photo with ``tmp_path/m.npy`` as the previous mask."""
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    out, mask = str(tmp_path / "o.png"), str(tmp_path / "m.npy")
    return main(
        [
            "segment",
            str(photo),
            "--out",
            out,
            "--random-weights",
            "0",
            "--point",
            "10,10",
            "--mask-input",
            mask,
        ]
    )


@pytest.fixture(scope="module")
def exported_tflite_coreml(conformance_model, tmp_path_factory) -> Path:
    """fp32 TFLite (one signature, N = 3) and Core ML exports of the mask-input decoder."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("coremltools")
    from edgesam_deploy.exporters.coreml.options import CoremlOptions
    from edgesam_deploy.exporters.tflite.options import TfliteOptions

    out = tmp_path_factory.mktemp("mask-input-tflite-coreml")
    options = ExportOptions.of(
        TfliteOptions(("fp32",), (3,)),
        CoremlOptions(("fp32",)),
        mask_input=True,
        calibration_size=1,
    )
    source = ModelSource(
        "edgesam", "checkpoint", path=str(CONFORMANCE_DIR / "edgesam_seed0_coffee.npz")
    )
    run_export(
        conformance_model, source, [Target.TFLITE, Target.COREML], out, options, run_parity=False
    )
    return out


@pytest.mark.parametrize("target", [Target.TFLITE, Target.COREML])
def test_tflite_and_coreml_decoders_reproduce_the_official_refinement(
    exported_tflite_coreml, conformance, conformance_model, maskinput, target
):
    """Both cases take N = 3 decoder points. Core ML runs as its emulation on Linux (fp32 here:
    PyTorch with the weights read back from the package); LiteRT runs the flatbuffer itself."""
    manifest = Manifest.load(exported_tflite_coreml)
    record = next(a for a in manifest.artifacts if a.role == Role.DECODER and a.target == target)
    assert record.file.split("/")[1].startswith("decoder-mask-input.fp32")
    session = open_session(record, exported_tflite_coreml, model=conformance_model)
    for case in CASES:
        _, coords, labels = _second(maskinput, conformance["image"], case)
        feeds = {
            "image_embeddings": conformance["bilinear/image_embeddings"],
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": maskinput[f"maskinput/{case}/mask_input"][None],
            "has_mask_input": np.ones(1, np.float32),
        }
        logits = session.run(feeds)["masks"][0]
        assert np.abs(logits - maskinput[f"maskinput/{case}/n4/low_res_logits"]).max() <= TOL, case
