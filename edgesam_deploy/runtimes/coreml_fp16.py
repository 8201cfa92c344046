"""Core ML fp16 emulation, the stand-in for Core ML's predictions where Core ML cannot run (Linux).

- ``Fp16Emulation``: runs a PyTorch graph in fp32 but rounds every op's inputs and outputs to fp16,
  except the ops of the fp32 groups, as Core ML's ``add_fp16_cast`` pass arranges them. Groups are
  predicates over (module types, torch function): the same predicate selects MIL ops through their
  TorchScript scopes (``mil_op_selector``), so the package and its emulation keep the same ops in fp32.
- ``activation_report``: per-op fp32 magnitudes (overflow risk) and per-layer fp16 error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import DeployError
from ..quantization import FP16_MAX

HEADROOM = 8.0  # an op whose fp32 magnitude comes within 8x of the fp16 maximum is an overflow risk
PRECISION_FLAG = 1e-2  # relative L2 error of a layer's fp16 output that is reported as imprecise

GroupPredicate = Callable[[tuple[str, ...], str], bool]

# name -> predicate(module types enclosing the op, torch function name)
FP32_GROUPS: dict[str, GroupPredicate] = {
    "layer_norm": lambda types, fn: "LayerNorm2d" in types or "LayerNorm" in types,
    "softmax": lambda types, fn: fn == "softmax",
    # stability score: pixel counts up to 256 * 256 = 65536 exceed the fp16 range
    "score_counts": lambda types, fn: not types and fn in ("sum", "div"),
}

_FN_ALIASES = {"truediv": "div", "rtruediv": "div", "itruediv": "div"}
_METADATA_FNS = frozenset(
    {"get", "size", "dim", "numel", "is_floating_point"}
)  # no arithmetic: never rounded


def function_name(func: Callable) -> str:
    """Torch function -> the aten-style name TorchScript scopes carry (``__truediv__`` -> ``div``)."""
    name = getattr(func, "__name__", str(func)).strip("_")
    return _FN_ALIASES.get(name, name)


def in_fp32_groups(groups: Iterable[str], module_types: tuple[str, ...], fn: str) -> bool:
    """True if an op (enclosing module types, function name) belongs to one of ``groups``."""
    return any(FP32_GROUPS[g](module_types, fn) for g in groups)


def validate_groups(groups: Iterable[str]) -> list[str]:
    """Check fp32 group names; DeployError for an unknown one."""
    groups = list(groups)
    unknown = [g for g in groups if g not in FP32_GROUPS]
    if unknown:
        raise DeployError(
            f"unknown fp32 op group(s) {', '.join(unknown)}; choose from {', '.join(FP32_GROUPS)}"
        )
    return groups


def mil_op_selector(groups: Iterable[str]) -> Callable[[Any], bool]:
    """``op_selector`` for ``ct.transform.FP16ComputePrecision``: True (fp16) unless the op's
    TorchScript scope puts it in one of ``groups``."""
    from coremltools.converters.mil.mil.scope import ScopeSource

    groups = validate_groups(groups)

    def select(op: Any) -> bool:
        scope = list(op.scopes.get(ScopeSource.TORCHSCRIPT_MODULE_TYPE, []) or [])
        if not scope:
            return True
        return not in_fp32_groups(groups, tuple(scope[:-1]), scope[-1])

    return select


def _round16(x: Any) -> Any:
    """Round float tensors (also inside lists / tuples) to fp16 precision, keep fp32 storage."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(torch.float16).to(x.dtype)
    if isinstance(x, (list, tuple)):
        return type(x)(_round16(v) for v in x)
    return x


@dataclass
class OpStat:
    """fp32 magnitude of one op (module path + function) over all calls."""

    module: str
    module_types: tuple[str, ...]
    fn: str
    max_abs: float = 0.0
    calls: int = 0


class Fp16Emulation(TorchFunctionMode):
    """Context manager: inside it, ``graph`` computes like a Core ML fp16 program on fp32 storage.

    Each torch function outside the fp32 ``groups`` gets fp16-rounded inputs (weights included) and
    an fp16-rounded output; functions inside a group compute in fp32 on what they receive. With
    ``emulate=False`` nothing is rounded (the fp32 reference) and only statistics are recorded.
    """

    def __init__(
        self,
        graph: nn.Module,
        groups: Iterable[str] = (),
        emulate: bool = True,
        record: bool = False,
        layer_errors: bool = False,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.groups = validate_groups(groups)
        self.emulate = emulate
        self.record = record
        self.stats: dict[tuple[str, str], OpStat] = {}
        self.compare = layer_errors
        self.layer_errors: dict[
            str, tuple[float, float]
        ] = {}  # leaf path -> (|fp16 - fp32|, |fp32|)
        self._stack: list[tuple[str, str]] = []  # (path, type) of modules being called
        self._hooks: list[Any] = []

    def __enter__(self) -> Fp16Emulation:
        for path, module in self.graph.named_modules():
            if module is self.graph:
                continue
            self._hooks.append(
                module.register_forward_pre_hook(self._push(path, type(module).__name__))
            )
            self._hooks.append(module.register_forward_hook(self._pop))
            if self.compare and not list(module.children()):
                self._hooks.append(module.register_forward_hook(self._compare(path)))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._stack.clear()
        super().__exit__(*exc)

    def _push(self, path: str, kind: str) -> Callable:
        def hook(module: nn.Module, args: Any) -> None:
            self._stack.append((path, kind))

        return hook

    def _pop(self, module: nn.Module, args: Any, out: Any) -> None:
        self._stack.pop()

    def _compare(self, path: str) -> Callable:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if not (isinstance(out, torch.Tensor) and out.is_floating_point()):
                return
            self.emulate = False
            try:
                ref = module.forward(*args)
            finally:
                self.emulate = True
            num, den = self.layer_errors.get(path, (0.0, 0.0))
            self.layer_errors[path] = (
                num + float(torch.linalg.vector_norm(out - ref)),
                den + float(torch.linalg.vector_norm(ref)),
            )

        return hook

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        fn = function_name(func)
        module_types = tuple(kind for _, kind in self._stack)
        rounded = (
            self.emulate
            and fn not in _METADATA_FNS
            and not in_fp32_groups(self.groups, module_types, fn)
        )
        if rounded:
            args, kwargs = _round16(args), {k: _round16(v) for k, v in kwargs.items()}
        out = func(*args, **kwargs)
        if (
            self.record
            and isinstance(out, torch.Tensor)
            and out.is_floating_point()
            and out.numel()
        ):
            path = self._stack[-1][0] if self._stack else ""
            stat = self.stats.setdefault((path, fn), OpStat(path, module_types, fn))
            stat.max_abs = max(stat.max_abs, float(out.detach().abs().max()))
            stat.calls += 1
        return _round16(out) if rounded else out


@dataclass
class ActivationReport:
    """Where fp16 is at risk in one graph on the sample feeds.

    ``overflow``: ops whose fp32 magnitude reaches FP16_MAX / HEADROOM; ``imprecise``: leaf layers
    whose emulated fp16 output differs from fp32 by more than PRECISION_FLAG (relative L2);
    ``groups_at_risk``: the fp32 groups that contain an overflow-risk op; ``fp32_ops``: the groups
    the emulated run kept in fp32.
    """

    max_abs: float
    fp32_ops: list[str] = field(default_factory=list)
    overflow: list[dict] = field(default_factory=list)
    imprecise: list[dict] = field(default_factory=list)
    groups_at_risk: list[str] = field(default_factory=list)
    worst_layers: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "max_abs": self.max_abs,
            "fp32_ops": self.fp32_ops,
            "overflow": self.overflow,
            "imprecise": self.imprecise,
            "groups_at_risk": self.groups_at_risk,
            "worst_layers": self.worst_layers,
        }


@torch.no_grad()
def activation_report(
    graph: nn.Module,
    feeds: list[tuple[torch.Tensor, ...]],
    groups: Iterable[str] | None = None,
    top: int = 5,
) -> ActivationReport:
    """Run ``graph`` on ``feeds`` in fp32 (recording every op's magnitude), then in fp16 emulation
    with ``groups`` in fp32 (None: the groups at risk), measuring each leaf layer's own fp16 error
    (its emulated output against the same layer in fp32 on the same input)."""
    with Fp16Emulation(graph, emulate=False, record=True) as tracer:
        for args in feeds:
            graph(*args)
    limit = FP16_MAX / HEADROOM
    risky = [s for s in tracer.stats.values() if s.max_abs >= limit]
    at_risk = [g for g in FP32_GROUPS if any(FP32_GROUPS[g](s.module_types, s.fn) for s in risky)]
    groups = at_risk if groups is None else validate_groups(groups)
    with Fp16Emulation(graph, groups, layer_errors=True) as emu:
        for args in feeds:
            graph(*args)
    errors = sorted(
        (
            {"layer": path, "rel_error": num / max(den, 1e-30)}
            for path, (num, den) in emu.layer_errors.items()
        ),
        key=lambda e: -e["rel_error"],
    )
    return ActivationReport(
        max_abs=max((s.max_abs for s in tracer.stats.values()), default=0.0),
        fp32_ops=groups,
        overflow=[
            {"module": s.module or "(graph)", "fn": s.fn, "max_abs": s.max_abs} for s in risky
        ],
        imprecise=[e for e in errors if e["rel_error"] > PRECISION_FLAG],
        groups_at_risk=at_risk,
        worst_layers=errors[:top],
    )
