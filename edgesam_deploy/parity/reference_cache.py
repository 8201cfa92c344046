"""The parity reference computed once: its arrays kept per key in this process and on disk.

A key names everything the reference's outputs depend on (weights, photo, prompts, score kinds,
refinements, the code version of the reference); ``Reference`` builds it with ``reference_key``.
A file is trusted only if it names its key and its arrays match the digest stored beside them; a
corrupt or foreign file is recomputed and rewritten. Files are written atomically. The folder is
``$EDGESAM_DEPLOY_CACHE/reference`` (``~/.cache/edgesam-deploy/reference``);
``EDGESAM_DEPLOY_REFERENCE_CACHE=off`` bypasses memory and disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import cache_dir
from ..errors import DeployError
from ..fileio import atomic_output

# bump when Reference computes anything differently: old files then simply stop matching
REFERENCE_VERSION = 1
SWITCH_ENV = "EDGESAM_DEPLOY_REFERENCE_CACHE"
MEMORY_ENTRIES = 8  # one entry is one photo's cases (about 19 MB)
DISK_ENTRIES = 40  # the least recently used files beyond this are removed (10 weights x 4 photos)
_KEY, _DIGEST = "__key__", "__digest__"

Arrays = dict[str, np.ndarray]
_memory: OrderedDict[str, Arrays] = OrderedDict()


def enabled() -> bool:
    """False when ``$EDGESAM_DEPLOY_REFERENCE_CACHE`` is off / 0 / no / false."""
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in ("off", "0", "no", "false")


def folder() -> Path:
    """Where the reference files live."""
    return cache_dir() / "reference"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a module's state dict: names, dtypes, shapes and values, in key order."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def array_digest(arrays: Arrays) -> str:
    """SHA-256 of named arrays (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def reference_key(**parts: object) -> str:
    """The key of one cache entry: a digest of ``parts`` (JSON-able, e.g. the weights' digest,
    the photo's input digest, its prompts) with the reference's code and torch versions."""
    described = {**parts, "reference_version": REFERENCE_VERSION, "torch": torch.__version__}
    text = json.dumps(described, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def path_for(key: str) -> Path:
    return folder() / f"{key}.npz"


def _read(key: str) -> Arrays | None:
    """The arrays stored for ``key``, or None if absent, unreadable, foreign or corrupt."""
    path = path_for(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    stored_key, digest = arrays.pop(_KEY, None), arrays.pop(_DIGEST, None)
    if stored_key is None or digest is None or str(stored_key) != key:
        return None
    if str(digest) != array_digest(arrays):
        return None
    with contextlib.suppress(OSError):  # recently used: pruned last (a read-only cache is fine)
        os.utime(path)
    return arrays


def _write(key: str, arrays: Arrays) -> None:
    """Store ``arrays`` atomically; a cache that cannot be written is skipped silently."""
    payload = {**arrays, _KEY: np.array(key), _DIGEST: np.array(array_digest(arrays))}
    try:
        with atomic_output(path_for(key)) as tmp, open(tmp, "wb") as f:
            np.savez(f, **payload)
        _prune()
    except (OSError, DeployError):
        pass


def _prune() -> None:
    """Remove the least recently used files beyond ``DISK_ENTRIES``."""
    files = sorted(folder().glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[DISK_ENTRIES:]:
        old.unlink(missing_ok=True)


def _remember(key: str, arrays: Arrays) -> Arrays:
    _memory[key] = arrays
    _memory.move_to_end(key)
    while len(_memory) > MEMORY_ENTRIES:
        _memory.popitem(last=False)
    return arrays


def cached(key: str, compute: Callable[[], Arrays]) -> Arrays:
    """The arrays of ``key``: from this process, else from disk, else ``compute()`` (then stored
    in both). With the cache off, always ``compute()``."""
    if not enabled():
        return compute()
    if key in _memory:
        _memory.move_to_end(key)
        return _memory[key]
    arrays = _read(key)
    if arrays is None:
        arrays = compute()
        _write(key, arrays)
    return _remember(key, arrays)


def forget() -> None:
    """Empty this process's copy (the disk files stay)."""
    _memory.clear()
