"""Bad input as an adversarial user gives it: photos as viewers show them, hostile checkpoints,
impossible output locations and numeric options; each is one line on stderr and exit 2."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgesam_deploy.cli.app import main
from edgesam_deploy.photos import read_photo
from edgesam_deploy.testhook import HOOK_ENV

REPO = Path(__file__).resolve().parents[1]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point, the worktree first on PYTHONPATH."""
    full = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "edgesam_deploy", *argv], capture_output=True, text=True, env=full
    )


def png_header(
    path: Path, w: int, h: int, depth: int = 8, color: int = 2, pixels: bytes = b""
) -> Path:
    """A PNG written chunk by chunk: a huge one costs no memory (only its header is ever read)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(
        path
    )
    return path


# ---------------------------------------------------------------- photos as viewers show them


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 230  # red
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    photo = read_photo(tmp_path / "cmyk.jpg")
    r, g, b = photo.rgb[8, 8].astype(int)
    assert photo.mode == "CMYK" and r > 200 and g < 40 and b < 40  # red, not cyan


def _portrait_stored_landscape(path: Path) -> np.ndarray:
    """A 60x40 (w x h) landscape image with EXIF orientation 6: shown as 40x60 portrait."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:10, :10] = (255, 0, 0)  # stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return stored


def test_exif_orientation_is_applied(tmp_path):
    stored = _portrait_stored_landscape(tmp_path / "phone.jpg")
    photo = read_photo(tmp_path / "phone.jpg")
    assert photo.orientation == 6 and photo.rgb.shape == (60, 40, 3)
    shown = np.rot90(stored, k=-1)  # orientation 6: rotate 90 degrees clockwise to display
    assert np.abs(photo.rgb.astype(int) - shown).mean() < 4
    assert "EXIF orientation 6 applied" in photo.describe()


def test_segment_prompts_and_mask_in_the_displayed_frame(tmp_path, capsys):
    _portrait_stored_landscape(tmp_path / "phone.jpg")
    out, mask = tmp_path / "o.png", tmp_path / "m.png"
    code = main(
        [
            "segment",
            str(tmp_path / "phone.jpg"),
            "--point",
            "20,55",
            "--out",
            str(out),
            "--mask-out",
            str(mask),
            "--random-weights",
            "0",
        ]
    )  # y=55 exists only in portrait
    assert code == 0, capsys.readouterr().err
    assert "EXIF orientation 6 applied" in " ".join(capsys.readouterr().out.split())
    for path in (out, mask):
        with Image.open(path) as im:
            assert im.size == (40, 60) and "EXIF orientation 6" in im.text["edgesam-deploy:frame"]


def test_sixteen_bit_palette_and_alpha(tmp_path):
    rgb16 = np.zeros((4, 5, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1] = 65535, 257 * 100
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb16)
    assert read_photo(png_header(tmp_path / "rgb16.png", 5, 4, 16, 2, raw)).rgb[0, 0].tolist() == [
        255,
        100,
        0,
    ]
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    pal.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    pal.save(tmp_path / "pal.png", transparency=0)
    assert read_photo(tmp_path / "pal.png").rgb.tolist() == [
        [[255] * 3, [200, 0, 0]],
        [[200, 0, 0], [255] * 3],
    ]
    la = Image.fromarray(
        np.dstack([np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8)]), mode="LA"
    )
    la.save(tmp_path / "la.png")
    assert (read_photo(tmp_path / "la.png").rgb == 255).all()  # fully transparent: white, as shown


def test_decompression_bomb_is_refused_with_a_way_out(tmp_path, capsys):
    bomb = png_header(tmp_path / "bomb.png", 20000, 10000)  # 200 megapixels, a few bytes
    args = [
        "segment",
        str(bomb),
        "--point",
        "1,1",
        "--out",
        str(tmp_path / "o.png"),
        "--random-weights",
        "0",
    ]
    assert main(args) == 2
    line = one_line(capsys)
    assert "200 megapixels, over the limit of 100" in line and "--max-megapixels" in line
    assert main([*args, "--max-megapixels", "300"]) == 2  # past the guard, then the (empty) data
    assert "not a readable image" in one_line(capsys)


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p: p.mkdir(), "is a directory, not an image"),
        (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 50), "not a readable image"),
        (lambda p: p.write_bytes(b""), "not a readable image"),
        (lambda p: os.mkfifo(p), "not a regular file"),  # reading it would block for ever
    ],
)
def test_unreadable_photos(tmp_path, capsys, make, expect):
    make(tmp_path / "in.jpg")
    assert (
        main(
            [
                "segment",
                str(tmp_path / "in.jpg"),
                "--point",
                "1,1",
                "--out",
                str(tmp_path / "o.png"),
                "--random-weights",
                "0",
            ]
        )
        == 2
    )
    assert expect in one_line(capsys)


# ---------------------------------------------------------------- hostile checkpoints


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda p, m: p.write_bytes(b""), "empty file, not a PyTorch checkpoint"),
        (
            lambda p, m: p.write_bytes(np.random.default_rng(1).bytes(5000)),
            "not a PyTorch checkpoint (neither",
        ),
        (
            lambda p, m: p.write_bytes(pickle.dumps(_Evil(m), protocol=2)),
            "refused: it needs code to load (posix.mkdir)",
        ),
        (
            lambda p, m: torch.save({"w": _Evil(m)}, p),
            "refused: it needs code to load (posix.mkdir)",
        ),
    ],
)
def test_hostile_checkpoints(photo, tmp_path, capsys, make, expect):
    ckpt, marker = tmp_path / "c.pth", tmp_path / "code-ran"
    make(ckpt, marker)
    assert (
        main(
            [
                "segment",
                str(photo),
                "--point",
                "1,1",
                "--out",
                str(tmp_path / "o.png"),
                "--checkpoint",
                str(ckpt),
            ]
        )
        == 2
    )
    line = one_line(capsys)
    assert expect in line and "weights_only" not in line and not marker.exists()


@pytest.mark.parametrize(
    "spoil, expect",
    [
        (lambda t: t.fill_(float("nan")), "NaN or infinite values: image_encoder.features.0.0.c"),
        (lambda t: t.to(torch.int32), "integer where weights are floating point"),
    ],
)
def test_checkpoint_with_unusable_weights(photo, tmp_path, capsys, random_model, spoil, expect):
    """A checkpoint whose structure is right but whose weights cannot be EdgeSAM's: refused in one
    line naming the tensors, not run to NaN masks or silently cast."""
    state = {k: v.clone() for k, v in random_model.state_dict().items()}
    key = "image_encoder.features.0.0.c.weight"
    state[key] = spoil(state[key])
    torch.save(state, tmp_path / "c.pth")
    argv = ["segment", str(photo), "--point", "1,1", "--out", str(tmp_path / "o.png")]
    assert main([*argv, "--checkpoint", str(tmp_path / "c.pth")]) == 2
    assert expect in one_line(capsys) and not (tmp_path / "o.png").exists()


def test_an_eof_error_is_not_an_interrupt(photo, tmp_path, capsys, monkeypatch):
    """click turns an EOFError into an Abort, which would read "interrupted" (exit 130)."""

    def truncated(*args, **kwargs):
        raise EOFError("ran out of input")

    monkeypatch.setattr("edgesam_deploy.api_segment.read_photo", truncated)
    argv = ["segment", str(photo), "--point", "1,1", "--out", str(tmp_path / "o.png")]
    assert main([*argv, "--random-weights", "0"]) == 3
    assert "internal error: EOFError: ran out of input" in one_line(capsys)


def test_torch_warnings_do_not_add_lines(photo, tmp_path):
    """A protocol-4 pickle makes torch warn on stderr; the user still sees one line."""
    ckpt, marker = tmp_path / "c.pth", tmp_path / "code-ran"
    ckpt.write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    proc = cli(
        "segment",
        str(photo),
        "--point",
        "1,1",
        "--out",
        str(tmp_path / "o.png"),
        "--checkpoint",
        str(ckpt),
    )
    assert proc.returncode == 2 and not marker.exists()
    assert proc.stderr.count("\n") == 1 and "refused: it needs code to load" in proc.stderr


# ---------------------------------------------------------------- options and output locations


@pytest.fixture
def mounts(tmp_path):
    """A full 1 MiB tmpfs and a read-only one (root can mount; elsewhere this fixture says which
    cases lose coverage and skips them)."""
    full, ro = tmp_path / "full", tmp_path / "ro"
    for path, opts in ((full, "size=1m"), (ro, "ro,size=1m")):
        path.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True
        )
        if proc.returncode != 0:
            pytest.skip(
                "cannot mount tmpfs here: the full-disk and read-only --out cases lose coverage"
            )
    with open(full / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    yield full, ro
    for path in (full, ro):
        subprocess.run(["umount", str(path)], check=True)


def test_out_locations_are_checked_before_any_work(photo, tmp_path, capsys, mounts):
    full, ro = mounts
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    (tmp_path / "dir.png").mkdir()
    export = [
        "export",
        "--target",
        "onnx",
        "--precision",
        "fp32",
        "--random-weights",
        "0",
        "--no-parity",
        "--out",
    ]
    segment = ["segment", str(photo), "--point", "1,1", "--random-weights", "0", "--out"]
    cases = [
        (export, a_file, "exists and is not a directory"),
        (export, ro / "exp", "Read-only file system"),
        (export, Path("/proc/edgesam-export"), "cannot write there"),
        (export, full / "exp", "No space left on device"),
        (segment, tmp_path / "dir.png", "is a directory; give a file name"),
        (segment, a_file / "o.png", "exists and is not a directory"),
        (segment, ro / "o.png", "Read-only file system"),
        (segment, Path("/proc/o.png"), "cannot write there"),
        (segment, full / "o.png", "No space left on device"),
    ]
    for argv, out, expect in cases:
        assert main([*argv, str(out)]) == 2, out
        line = one_line(capsys)  # one line: the model was not even loaded (that prints a line)
        assert expect in line, (out, line)


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["export", "--target", ",", "--out", "{tmp}/e"], "name at least one of"),
        (
            ["export", "--target", "onnx", "--calibration-size", "0", "--out", "{tmp}/e"],
            "greater than or equal to 1",
        ),
        (
            ["export", "--target", "onnx", "--out", "{tmp}/e", "--random-weights", str(2**64)],
            "less than or equal to 18446744073709551615",
        ),
        (
            [
                "segment",
                "{photo}",
                "--point",
                "1,1",
                "--out",
                "{tmp}/o.png",
                "--random-weights",
                "-1",
            ],
            "greater than or equal to 0",
        ),
        (
            [
                "segment",
                "{photo}",
                "--point",
                "nan,nan",
                "--out",
                "{tmp}/o.png",
                "--random-weights",
                "0",
            ],
            "outside the 60x40 image",
        ),
        (
            [
                "segment",
                "{photo}",
                "--point",
                "1,1",
                "--out",
                "{tmp}/o.png",
                "--max-megapixels",
                "0",
            ],
            "greater than or equal to 0.01",
        ),
        (
            ["bench", "--timeout", "-1", "--artifacts", "{tmp}"],
            "--timeout -1: must be more than 0 seconds",
        ),
        (
            ["bench", "--timeout", "0", "--artifacts", "{tmp}"],
            "--timeout 0: must be more than 0 seconds",
        ),
        (
            ["bench", "--timeout", "nan", "--artifacts", "{tmp}"],
            "--timeout nan: must be more than 0 seconds",
        ),
        (["devices", "--no-check", "--profiles", "{tmp}/latin1.toml"], "not UTF-8 text"),
        (["export", "--out", "{tmp}/e"], "Missing option '--target'"),
        (["bench", "--artifacts", "{tmp}", "--parity-photos", " , "], "names nothing"),
        (["quantize-scan", "--out", "{tmp}/q", "--blocks", ""], "names nothing"),
        (["quantize-scan", "--out", "{tmp}/q", "--blocks", "block27"], "unknown block block27"),
        (["devices", "--no-check", "--profiles", ""], "an empty path"),
        (
            ["export", "--target", "onnx", "--precision", "", "--out", "{tmp}/e"],
            "names nothing",
        ),
        (
            ["export", "--target", "onnx", "--precision", " ,", "--out", "{tmp}/e"],
            "names nothing",
        ),
    ],
)
def test_bad_options_are_one_line(photo, tmp_path, capsys, argv, expect):
    (tmp_path / "latin1.toml").write_bytes("[caf\xe9]\nrunner = 'local'\n".encode("latin-1"))
    args = [a.format(tmp=tmp_path, photo=photo) for a in argv]
    assert main(args) == 2
    assert expect in one_line(capsys)


def test_debug_adds_the_traceback_and_keeps_the_exit_code(tmp_path):
    proc = cli("--debug", "parity", str(tmp_path))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("edgesam-deploy: error: ")


def test_ctrl_c_during_start_up_is_one_line():
    proc = cli("models", env={HOOK_ENV: "startup:INT"})
    assert proc.returncode == 130 and proc.stderr == "edgesam-deploy: interrupted\n"


def test_export_running_out_of_space_midway(tmp_path, capsys):
    """Room for the probe but not for a 22 MB graph: one line after tracing, nothing left behind."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount tmpfs here: the disk-full-during-export case loses coverage")
    try:
        code = main(
            [
                "export",
                "--target",
                "onnx",
                "--precision",
                "fp32",
                "--out",
                str(mnt / "e"),
                "--random-weights",
                "0",
                "--no-parity",
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and "No space left on device" in err.strip().splitlines()[-1]
        assert "Traceback" not in err
        assert not (mnt / "e").exists()  # the export created it: removed again
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_segment_removes_partials_of_killed_runs(photo, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.png.partial-{dead.pid}"
    stale.write_bytes(b"\x89PNG half")
    args = [
        "segment",
        str(photo),
        "--point",
        "5,5",
        "--out",
        str(tmp_path / "o.png"),
        "--random-weights",
        "0",
    ]
    assert main(args) == 0
    assert not stale.exists() and (tmp_path / "o.png").is_file()
