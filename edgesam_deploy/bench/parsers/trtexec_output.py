"""TensorRT ``trtexec --exportOutput=FILE`` -> output tensors.

trtexec writes a JSON list with one object per output binding: ``name``, ``dimensions``
("1x4x256x256") and ``values`` (a flat list); see ``exportJSONOutput`` in TensorRT's
samples/common/sampleReporting.cpp.
Non-finite values come out as C++ prints them (``nan``, ``inf``), which is not JSON; they are read
as NaN / infinity so that the parity judge can report them.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from ...device.protocol import ProtocolError

_NONFINITE = re.compile(r"(?<![\w.\"])([-+]?)(nan|inf)(?![\w\"])", re.IGNORECASE)


def _as_json(text: str) -> str:
    """C++ stream spellings of non-finite floats -> JSON's NaN / Infinity tokens."""
    return _NONFINITE.sub(lambda m: "NaN" if m[2].lower() == "nan" else f"{m[1]}Infinity", text)


def parse(text: str) -> dict[str, np.ndarray]:
    """Output name -> float32 tensor of the reported dimensions; ProtocolError if the file is
    truncated, malformed or a value count does not match its dimensions."""
    try:
        data = json.loads(_as_json(text))
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"trtexec output is not complete JSON ({exc.msg} at char {exc.pos})"
        ) from exc
    if not isinstance(data, list):
        raise ProtocolError("trtexec output is not a list of tensors")
    out = {}
    for item in data:
        try:
            name, dims, values = str(item["name"]), str(item["dimensions"]), item["values"]
            shape = tuple(int(d) for d in dims.split("x")) if dims else ()
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"trtexec output has a malformed tensor entry ({exc})") from exc
        if len(values) != math.prod(shape):
            raise ProtocolError(
                f"trtexec output '{name}': {len(values)} values for dimensions {dims}"
            )
        out[name] = np.asarray(values, dtype=np.float32).reshape(shape)
    return out
