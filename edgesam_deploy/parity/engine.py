"""The target-independent parity engine: every artifact against the PyTorch fp32 reference.

For each photo (several aspect ratios) and prompt case, the reference computes embeddings, low-res
logits, scores and final masks. An encoder artifact is judged on its embeddings and on the masks the
reference decoder makes from them; a decoder artifact on what it makes from the reference embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import torch

from ..graphs import DecoderGraph, EncoderGraph
from ..manifest import ArtifactRecord
from ..modeling import EdgeSam
from ..processing import (
    decoder_inputs,
    masks_from_logits,
    postprocess_logits,
    preprocess,
)
from ..runtimes.base import GraphSession
from ..samples import PARITY_PHOTOS, load_photo, standard_prompts
from ..vocabulary import ProgressFn, Role, ScoreKind, counting
from . import metrics as M
from . import reference_cache
from .thresholds import MIN_MASK_PIXELS, thresholds_for, violations

# two-click cases for decoders that take a previous mask: (first prompt, second prompt)
REFINEMENTS = (("one_point", "points_bg"), ("one_point", "box_point"))


@dataclass
class PromptCase:
    name: str
    coords: np.ndarray  # 1 x N x 2, 1024 frame
    labels: np.ndarray  # 1 x N
    ref_logits: np.ndarray = field(repr=False)  # 4 x 256 x 256
    ref_scores: dict[str, np.ndarray] = field(repr=False)  # kind -> 4
    ref_masks: np.ndarray = field(repr=False)  # 4 x H x W bool
    mask_input: np.ndarray | None = field(
        default=None, repr=False
    )  # 1 x 1 x 256 x 256 (refinement)


@dataclass
class ImageCase:
    name: str
    tensor: np.ndarray = field(repr=False)  # 1 x 3 x 1024 x 1024
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    ref_embeddings: np.ndarray = field(repr=False)  # 1 x 256 x 64 x 64
    prompts: list[PromptCase]


class Reference:
    """The fp32 PyTorch reference (bilinear upsampling, unfolded) on the parity photos and prompts.

    Each photo's cases are computed once per weights and case set: kept in this process and on
    disk by ``reference_cache`` (``cache=False`` recomputes them).
    """

    def __init__(
        self,
        model: EdgeSam,
        photos: list[str] | None = None,
        loader: Callable[[str], np.ndarray] = load_photo,
        cache: bool = True,
    ) -> None:
        """``photos``: names ``loader`` turns into RGB uint8 H x W x 3 (default: the parity photos
        by sample name; the sensitivity scan passes its calibration images)."""
        self.model = model
        self.loader = loader
        self.encoder = EncoderGraph(model, fold=False).eval()
        self.decoders = {
            kind: DecoderGraph(model, kind, mask_input=True).eval() for kind in ScoreKind
        }
        self.photo_names = photos or list(PARITY_PHOTOS)
        self.cache = cache

    @torch.no_grad()
    def decode(
        self,
        emb: np.ndarray,
        coords: np.ndarray,
        labels: np.ndarray,
        kind: ScoreKind = ScoreKind.IOU,
        mask_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Reference decoder (``mask_input`` 1 x 1 x 256 x 256: a previous answer, or None):
        -> (scores 4, logits 4 x 256 x 256)."""
        args = [torch.from_numpy(a) for a in (emb, coords, labels)]
        if mask_input is not None:
            args += [torch.from_numpy(mask_input), torch.ones(1)]
        s, m = self.decoders[ScoreKind(kind)](*args)
        return s[0].numpy(), m[0].numpy()

    def _prompt_case(
        self,
        name: str,
        case: ImageCase,
        coords: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None,
    ) -> PromptCase:
        """A prompt case with the reference's answers (both score kinds) and final masks."""
        emb = case.ref_embeddings
        scores_iou, logits = self.decode(emb, coords, labels, ScoreKind.IOU, mask_input)
        scores_stab, _ = self.decode(emb, coords, labels, ScoreKind.STABILITY, mask_input)
        masks = masks_from_logits(postprocess_logits(logits, case.input_size, case.original_size))
        scores = {ScoreKind.IOU: scores_iou, ScoreKind.STABILITY: scores_stab}
        return PromptCase(name, coords, labels, logits, scores, masks, mask_input)

    def _refinements(self, case: ImageCase) -> list[PromptCase]:
        """The photo's two-click cases (``REFINEMENTS``): the first prompt's answer (the mask the
        IoU head ranks best, as an app picks it) is the second prompt's ``mask_input``."""
        prompts = {p.name: p for p in case.prompts}
        out = []
        for first, second in REFINEMENTS:
            best = int(np.argmax(prompts[first].ref_scores[ScoreKind.IOU]))
            mask = prompts[first].ref_logits[best][None, None].astype(np.float32)
            p = prompts[second]
            out.append(self._prompt_case(f"{first}+{second}", case, p.coords, p.labels, mask))
        return out

    @torch.no_grad()
    def compute_photo(self, case: ImageCase) -> list[PromptCase]:
        """Run the model on one photo: fills ``case`` (embeddings, one case per standard prompt)
        and returns its refinements. The one place the reference's outputs are computed."""
        case.ref_embeddings = self.encoder(torch.from_numpy(case.tensor)).numpy()
        for pname, prompt in standard_prompts(*case.original_size).items():
            coords, labels = decoder_inputs(prompt, case.original_size, case.input_size)
            case.prompts.append(self._prompt_case(pname, case, coords, labels, None))
        return self._refinements(case)

    @cached_property
    def _weights(self) -> str:
        return reference_cache.weights_digest(self.model)

    def _photo(self, name: str) -> tuple[ImageCase, list[PromptCase]]:
        """One photo's cases and refinements, from the cache when it holds them."""
        pre = preprocess(self.loader(name))
        blank = np.zeros((0,), np.float32)
        case = ImageCase(name, pre.tensor, pre.original_size, pre.input_size, blank, [])
        if not self.cache:
            return case, self.compute_photo(case)
        key = reference_cache.reference_key(
            weights=self._weights,
            photo=name,
            input=reference_cache.array_digest({"image": pre.tensor}),
            prompts=standard_prompts(*pre.original_size),
            scores=list(ScoreKind),
            refinements=REFINEMENTS,
        )
        arrays = reference_cache.cached(key, lambda: _photo_arrays(case, self.compute_photo(case)))
        return _photo_from_arrays(case, arrays)

    @cached_property
    def _photos(self) -> dict[str, tuple[ImageCase, list[PromptCase]]]:
        return {name: self._photo(name) for name in self.photo_names}

    @property
    def cases(self) -> list[ImageCase]:
        """One case per photo: its input, reference embeddings and standard prompt cases."""
        return [case for case, _ in self._photos.values()]

    @property
    def refinements(self) -> dict[str, list[PromptCase]]:
        """Per photo, its two-click cases (``REFINEMENTS``)."""
        return {name: refined for name, (_, refined) in self._photos.items()}


def _photo_arrays(case: ImageCase, refinements: list[PromptCase]) -> dict[str, np.ndarray]:
    """A photo's reference outputs as named arrays (what ``reference_cache`` stores)."""
    out = {
        "embeddings": case.ref_embeddings,
        "prompts": np.array([p.name for p in case.prompts]),
        "refinements": np.array([p.name for p in refinements]),
    }
    for p in (*case.prompts, *refinements):
        out.update(
            {
                f"{p.name}/coords": p.coords,
                f"{p.name}/labels": p.labels,
                f"{p.name}/logits": p.ref_logits,
                f"{p.name}/masks": p.ref_masks,
                **{f"{p.name}/scores/{k}": v for k, v in p.ref_scores.items()},
            }
        )
        if p.mask_input is not None:
            out[f"{p.name}/mask_input"] = p.mask_input
    return out


def _photo_from_arrays(
    case: ImageCase, arrays: dict[str, np.ndarray]
) -> tuple[ImageCase, list[PromptCase]]:
    """Inverse of ``_photo_arrays``: ``case`` (input fields set) with its reference outputs."""

    def prompt(name: str) -> PromptCase:
        scores = {k: arrays[f"{name}/scores/{k}"] for k in ScoreKind}
        return PromptCase(
            name,
            arrays[f"{name}/coords"],
            arrays[f"{name}/labels"],
            arrays[f"{name}/logits"],
            scores,
            arrays[f"{name}/masks"],
            arrays.get(f"{name}/mask_input"),
        )

    case.ref_embeddings = arrays["embeddings"]
    case.prompts = [prompt(str(n)) for n in arrays["prompts"]]
    return case, [prompt(str(n)) for n in arrays["refinements"]]


@dataclass
class ArtifactParity:
    """Parity of one artifact: metrics, the thresholds applied, and the verdict."""

    file: str
    target: str
    role: str
    precision: str
    metrics: dict[str, float]
    thresholds: dict[str, list]
    failures: list[str]
    passed: bool
    runtime: str
    note: str = ""
    measured_on: str = "host"  # host | device | emulated: where the judged outputs were computed
    measured: bool = True  # False: the runtime cannot run here; checked structurally at export

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def not_measured(cls, record: ArtifactRecord, reason: str) -> ArtifactParity:
        """The row of an artifact this machine cannot run: no metrics, no verdict on drift."""
        return cls(
            record.file,
            record.target,
            record.role,
            record.precision,
            {},
            {},
            [],
            True,
            "not measured here",
            reason,
            measured=False,
        )


CaseOutputs = dict[str, dict[str, np.ndarray]]  # case id -> output name -> tensor


def encoder_case_id(photo: str) -> str:
    """Protocol case id of a photo's encoder input."""
    return f"enc-{photo}"


def decoder_case_id(photo: str, prompt: str) -> str:
    """Protocol case id of a photo's reference embeddings with one prompt."""
    return f"dec-{photo}-{prompt}"


def decoder_cases(
    record: ArtifactRecord, reference: Reference, case: ImageCase
) -> list[PromptCase]:
    """The prompt cases a decoder is judged on: every prompt, and for a decoder that takes a
    previous mask also the two-click refinements of this photo."""
    if "mask_input" not in record.graph.input_names:
        return case.prompts
    return case.prompts + reference.refinements[case.name]


def decoder_feeds(
    record: ArtifactRecord, case: ImageCase, prompt: PromptCase
) -> dict[str, np.ndarray]:
    """A decoder's feeds for one prompt case (the mask inputs where its graph has them: the
    previous answer with has_mask_input 1, or zeros with 0 for a first click)."""
    feeds = {
        "image_embeddings": case.ref_embeddings,
        "point_coords": prompt.coords,
        "point_labels": prompt.labels,
    }
    if "mask_input" in record.graph.input_names:
        has = prompt.mask_input is not None
        mask = prompt.mask_input if has else np.zeros((1, 1, 256, 256), np.float32)
        feeds.update(mask_input=mask, has_mask_input=np.array([float(has)], np.float32))
    return feeds


def _mask_metrics(
    case: ImageCase,
    prompt: PromptCase,
    logits: np.ndarray,
    scores: np.ndarray,
    kind: str,
    acc: dict[str, list],
) -> None:
    masks = masks_from_logits(postprocess_logits(logits, case.input_size, case.original_size))
    iou, union = M.mask_iou(prompt.ref_masks, masks)
    acc["iou"].extend(iou.tolist())
    acc["iou_sized"].extend(iou[union >= MIN_MASK_PIXELS].tolist())
    acc["logit"].append(M.max_abs(prompt.ref_logits, logits))
    ref_scores = prompt.ref_scores[kind]
    acc["score"].append(M.max_abs(ref_scores, scores))
    acc["best"].append(float(np.argmax(ref_scores) == np.argmax(scores)))


def case_count(record: ArtifactRecord, reference: Reference) -> int:
    """How many parity cases ``collect`` goes through for ``record``: one per photo for an
    encoder, one per photo and prompt case for a decoder."""
    if record.role == Role.ENCODER:
        return len(reference.cases)
    return sum(len(decoder_cases(record, reference, case)) for case in reference.cases)


def collect(
    session: GraphSession, reference: Reference, progress: ProgressFn = lambda m: None
) -> CaseOutputs:
    """Run ``session`` on every parity case of its role it takes (outputs keyed by case id);
    ``progress`` advances by one per case (``case_count`` in all)."""
    record: ArtifactRecord = session.record
    steps = counting(progress)
    steps(f"parity: {record.file}")
    out: CaseOutputs = {}
    for case in reference.cases:
        if record.role == Role.ENCODER:
            out[encoder_case_id(case.name)] = session.run({"image": case.tensor})
            steps.advance()
            continue
        for prompt in decoder_cases(record, reference, case):
            if session.accepts_points(prompt.labels.shape[1]):
                feeds = decoder_feeds(record, case, prompt)
                out[decoder_case_id(case.name, prompt.name)] = session.run(feeds)
            steps.advance()
    return out


def _accumulate(
    record: ArtifactRecord, reference: Reference, outputs: CaseOutputs
) -> tuple[dict[str, list], int]:
    """Metric samples of every case in ``outputs``, and the number of reference cases absent."""
    kind: ScoreKind = record.details.get("scores", "iou")
    acc: dict[str, list] = {
        "iou": [],
        "iou_sized": [],
        "logit": [],
        "score": [],
        "best": [],
        "cos": [],
        "psnr": [],
        "emb": [],
    }
    absent = 0
    for case in reference.cases:
        if record.role == Role.ENCODER:
            out = outputs.get(encoder_case_id(case.name))
            if out is None:
                absent += 1
                continue
            emb = out["image_embeddings"]
            acc["cos"].append(M.cosine(case.ref_embeddings, emb))
            acc["psnr"].append(M.psnr(case.ref_embeddings, emb))
            acc["emb"].append(M.max_abs(case.ref_embeddings, emb))
            for prompt in case.prompts:
                scores, logits = reference.decode(
                    emb.astype(np.float32), prompt.coords, prompt.labels, kind
                )
                _mask_metrics(case, prompt, logits, scores, kind, acc)
            continue
        for prompt in decoder_cases(record, reference, case):
            out = outputs.get(decoder_case_id(case.name, prompt.name))
            if out is None:
                absent += 1
                continue
            _mask_metrics(case, prompt, out["masks"][0], out["scores"][0], kind, acc)
    return acc, absent


def failed(
    record: ArtifactRecord, reason: str, runtime: str = "", measured_on: str = "host"
) -> ArtifactParity:
    """A failed row that carries no metrics: the artifact could not be judged (``reason``)."""
    limits = thresholds_for(record.precision, record.role)
    return ArtifactParity(
        record.file,
        record.target,
        record.role,
        record.precision,
        {},
        {k: list(v) for k, v in limits.items()},
        [reason],
        False,
        runtime,
        "",
        measured_on,
    )


def judge(
    record: ArtifactRecord,
    reference: Reference,
    outputs: CaseOutputs,
    runtime: str,
    note: str = "",
    measured_on: str = "host",
) -> ArtifactParity:
    """Judge an artifact's outputs (from any runtime, on any device) against the reference and its
    precision's thresholds. Reference cases absent from ``outputs`` are counted as skipped."""
    acc, absent = _accumulate(record, reference, outputs)
    if not acc["iou"]:
        return failed(record, "no parity case was run", runtime, measured_on)
    metrics: dict[str, float] = {
        "mask_iou_mean": float(np.mean(acc["iou"])),
        "mask_iou_min": float(np.min(acc["iou_sized"] or [1.0])),
        "logit_max_abs": float(np.max(acc["logit"])),
        "score_max_abs": float(np.max(acc["score"])),
        "best_mask_agreement": float(np.mean(acc["best"])),
    }
    if record.role == Role.ENCODER:
        metrics.update(
            emb_cosine_min=float(np.min(acc["cos"])),
            emb_psnr_min=float(np.min(acc["psnr"])),
            emb_max_abs=float(np.max(acc["emb"])),
        )
    limits = thresholds_for(record.precision, record.role)
    failures = violations(metrics, limits)
    skip_note = (
        f"{absent} prompt case(s) skipped: the artifact has no input for their point count"
        if absent
        else ""
    )
    return ArtifactParity(
        record.file,
        record.target,
        record.role,
        record.precision,
        metrics,
        {k: list(v) for k, v in limits.items()},
        failures,
        not failures,
        runtime,
        "; ".join(n for n in (note, skip_note) if n),
        measured_on,
    )


def evaluate(
    session: GraphSession, reference: Reference, progress: ProgressFn = lambda m: None
) -> ArtifactParity:
    """Run ``session`` on every parity case here and judge it against its precision's thresholds."""
    return judge(
        session.record,
        reference,
        collect(session, reference, progress),
        session.runtime,
        session.note,
    )
