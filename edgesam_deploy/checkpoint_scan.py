"""Why a checkpoint did not load, found without unpickling it: code it would run, or damage."""

from __future__ import annotations

import pickletools
from pathlib import Path

# globals the weights-only loader accepts in a plain state_dict; anything else needs code
_DATA_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")
_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "UNICODE",
    "BINUNICODE8",
    "SHORT_BINSTRING",
    "BINSTRING",
}


def _pickle_globals(data: bytes) -> list[str] | None:
    """Every ``module.name`` a pickle imports, or None if ``data`` is not a pickle at all."""
    names: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _STRING_OPS:
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # pickletools raises ValueError and others on bytes that are no pickle
        return None
    return names


def unsafe_globals(path: Path) -> list[str] | None:
    """The code a checkpoint would import to load (sorted), [] if none, None if it is neither a
    torch zip archive nor a pickle (random bytes, an empty or truncated file)."""
    with open(path, "rb") as fh:
        is_zip = fh.read(4) == b"PK\x03\x04"
    if is_zip:
        import torch

        try:
            return sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)))
        except Exception:  # a truncated or damaged archive: no code found
            return []
    names = _pickle_globals(Path(path).read_bytes())
    if names is None:
        return None
    return sorted({n for n in names if not n.startswith(_DATA_GLOBALS)})


def load_failure(path: Path, exc: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed with ``exc``."""
    from .errors import first_line

    if Path(path).stat().st_size == 0:
        return f"{path}: empty file, not a PyTorch checkpoint"
    code = unsafe_globals(path)
    if code:
        shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        return (
            f"{path}: refused: it needs code to load ({shown}); a checkpoint must hold only tensors"
        )
    if code is None:
        return f"{path}: not a PyTorch checkpoint (neither a torch.save archive nor a pickle)"
    # the reader's first sentence (torch's go on about filing a bug, and would be cut mid-way)
    detail = "" if "weights_only" in str(exc) else f": {first_line(exc, 300).split('. ')[0]}"
    return f"{path}: not a readable PyTorch checkpoint (truncated or corrupt{detail})"
