"""Pre- and post-processing against PyTorch and PIL, image formats and prompt errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from edgesam_deploy.photos import load_image
from edgesam_deploy.processing import (
    ImageError, Prompt, PromptError, decoder_inputs, postprocess_logits, preprocess, resize_bilinear,
    resized_size, to_rgb_uint8,
)


def test_resized_size():
    assert resized_size(400, 600) == (683, 1024)
    assert resized_size(640, 427) == (1024, 683)
    assert resized_size(512, 512) == (1024, 1024)


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 4, 256, 256)])
def test_resize_matches_torch(shape):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for oh, ow in ((1024, 1024), (13, 300), (683, 1024)):
        ref = F.interpolate(torch.from_numpy(x), (oh, ow), mode="bilinear", align_corners=False).numpy()
        # PyTorch computes source positions in float32, we in float64: within the 1e-4 tolerance
        np.testing.assert_allclose(resize_bilinear(x, oh, ow), ref, atol=1e-4)


def test_postprocess_matches_torch_pipeline():
    lowres = np.random.default_rng(1).normal(size=(4, 256, 256)).astype(np.float32)
    t = F.interpolate(torch.from_numpy(lowres)[None], (1024, 1024), mode="bilinear", align_corners=False)
    t = F.interpolate(t[..., :683, :1024], (400, 600), mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(postprocess_logits(lowres, (683, 1024), (400, 600)), t, atol=1e-4)


def test_image_formats(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert np.array_equal(load_image(tmp_path / "rgb.png"), rgb)
    over_white = (rgb * 128.0 + 255 * 127.0) / 255  # alpha 128 composited over white, as shown
    assert np.abs(load_image(tmp_path / "rgba.png") - over_white).max() <= 1
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (20, 30, 3) and np.array_equal(gray[..., 2], rgb[..., 0])
    assert np.array_equal(load_image(tmp_path / "gray16.png"), gray)
    assert load_image(tmp_path / "palette.png").shape == (20, 30, 3)
    assert to_rgb_uint8(np.ones((5, 5), dtype=bool)).max() == 255
    assert to_rgb_uint8(np.full((5, 5, 3), 0.5)).max() == 128


def test_not_an_image(tmp_path):
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "x.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageError):
        to_rgb_uint8(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError, match="too small"):
        to_rgb_uint8(np.zeros((1, 4, 3), np.uint8))


def test_preprocess_layout():
    img = np.full((400, 600, 3), 255, np.uint8)
    pre = preprocess(img)
    assert pre.tensor.shape == (1, 3, 1024, 1024) and pre.input_size == (683, 1024)
    assert np.all(pre.tensor[0, :, 683:, :] == 0)
    np.testing.assert_allclose(pre.tensor[0, 0, 0, 0], (255 - 123.675) / 58.395, rtol=1e-6)


def test_decoder_inputs():
    p = Prompt([(300.0, 200.0), (10.0, 20.0)], [1, 0])
    coords, labels = decoder_inputs(p, (400, 600), (683, 1024))
    assert coords.shape == (1, 3, 2) and labels.tolist() == [[1, 0, -1]]
    np.testing.assert_allclose(coords[0, 0], [300 * 1024 / 600, 200 * 683 / 400], rtol=1e-6)
    assert coords[0, 2].tolist() == [0, 0]
    boxed = Prompt([(300.0, 200.0)], [1], box=(10, 20, 300, 380))
    coords, labels = decoder_inputs(boxed, (400, 600), (683, 1024))
    assert labels.tolist() == [[1, 2, 3]]


@pytest.mark.parametrize(
    "prompt, match",
    [
        (Prompt([(600.0, 10.0)], [1]), "outside"),
        (Prompt([(-1.0, 10.0)], [1]), "outside"),
        (Prompt([(5.0, 5.0)], [2]), "label"),
        (Prompt(box=(10, 10, 5, 50)), "not a box"),
        (Prompt(box=(10, 10, 700, 50)), "not a box"),
        (Prompt(), "at least one"),
    ],
)
def test_prompt_validation(prompt, match):
    with pytest.raises(PromptError, match=match):
        prompt.validate((400, 600))
