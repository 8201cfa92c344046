"""Checkpoint registry, cache, strict loading and the errors users see."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from edgesam_deploy import checkpoints as ck
from edgesam_deploy.checkpoints import (
    CheckpointError,
    load_model,
    load_model_for_source,
    read_state_dict,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, random_model):
    d = tmp_path_factory.mktemp("ckpt")
    sd = random_model.state_dict()
    flat, wrapped = d / "flat.pth", d / "train.pth"
    torch.save(sd, flat)
    torch.save({"model": sd, "epoch": 3}, wrapped)
    return d, flat, wrapped


def test_registry_urls():
    assert (
        ck.REGISTRY["edgesam"].url
        == "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights/edge_sam.pth"
    )
    assert ck.REGISTRY["edgesam-3x"].url.endswith("/weights/edge_sam_3x.pth")
    assert "non-commercial" in ck.LICENSE_NOTICE


@pytest.mark.parametrize("which", ["flat", "wrapped"])
def test_load_flat_and_training_checkpoint(saved, random_model, which):
    path = saved[1] if which == "flat" else saved[2]
    model, source = load_model(checkpoint=path)
    assert source.kind == "checkpoint" and len(source.sha256) == 64
    key = "mask_decoder.mask_tokens.weight"
    assert torch.equal(model.state_dict()[key], random_model.state_dict()[key])


def test_truncated_checkpoint(saved, tmp_path):
    data = saved[1].read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_model(checkpoint=bad)
    # the reader's first sentence only: torch's message runs on past any cut
    assert str(err.value).endswith("failed finding central directory)"), str(err.value)


def test_other_architecture_lists_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(checkpoint=path)
    msg = str(err.value)
    assert (
        "not an EdgeSAM checkpoint" in msg
        and "missing:" in msg
        and "unexpected: conv1.weight, fc.weight" in msg
    )
    assert "\n" not in msg


def test_wrong_shape_is_reported(saved, tmp_path, random_model):
    sd = dict(random_model.state_dict())
    sd["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="wrong shape: mask_decoder.iou_token.weight"):
        load_model(checkpoint=path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="needs code"):
        read_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(CheckpointError):
        read_state_dict(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_state_dict(tmp_path / "absent.pth")


def test_no_checkpoint_no_network_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESAM_DEPLOY_CACHE", str(tmp_path))
    monkeypatch.setattr(ck, "URL_BASE", "http://127.0.0.1:9/weights/")
    with pytest.raises(CheckpointError) as err:
        load_model("edgesam")
    assert "--checkpoint PATH" in str(err.value) and "--random-weights" in str(err.value)
    assert not list(tmp_path.iterdir()), "a failed download must leave nothing behind"
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model("edgesam", allow_download=False)


def test_cache_hit_and_recorded_sha(tmp_path, monkeypatch, saved):
    monkeypatch.setenv("EDGESAM_DEPLOY_CACHE", str(tmp_path))
    cached = tmp_path / "edge_sam.pth"
    cached.write_bytes(saved[1].read_bytes())
    (tmp_path / "edge_sam.pth.sha256.json").write_text(
        json.dumps({"sha256": ck.sha256_file(cached)})
    )
    model, source = load_model("edgesam")
    assert source.path == str(cached)
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_model("edgesam")


def test_download_records_sha(tmp_path, monkeypatch, saved):
    """The real download path against a file:// URL (no network here)."""
    monkeypatch.setenv("EDGESAM_DEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ck, "URL_BASE", saved[0].as_uri() + "/")
    monkeypatch.setitem(ck.REGISTRY, "edgesam", ck.Variant("edgesam", "flat.pth", "test"))
    path = ck.download(ck.REGISTRY["edgesam"])
    record = json.loads((path.parent / "flat.pth.sha256.json").read_text())
    assert record["sha256"] == ck.sha256_file(saved[1])


def test_load_model_for_source(saved):
    _, src = load_model(random_seed=5)
    model, again = load_model_for_source(src.as_dict())
    assert again.seed == 5
    _, csrc = load_model(checkpoint=saved[1])
    other = dict(csrc.as_dict(), sha256="0" * 64)
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        load_model_for_source(other)
    with pytest.raises(CheckpointError, match="pass --checkpoint"):
        load_model_for_source(dict(csrc.as_dict(), path="/nonexistent/x.pth"))
    with pytest.raises(CheckpointError, match="from a checkpoint file the manifest does not name"):
        load_model_for_source(dict(csrc.as_dict(), path=None))
    with pytest.raises(CheckpointError, match="^/nonexistent/y.pth: no such checkpoint file$"):
        load_model_for_source(csrc.as_dict(), checkpoint=Path("/nonexistent/y.pth"))


def test_both_sources_is_an_error(saved):
    with pytest.raises(CheckpointError, match="not both"):
        load_model(checkpoint=saved[1], random_seed=0)
