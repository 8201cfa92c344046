"""Host side of the device-parity protocol: write a bundle of the parity cases and artifacts.

Encoder cases feed the preprocessed parity photos; decoder cases the reference embeddings of a
photo (written once per photo, shared by its prompts) with one prompt each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..device.protocol import Bundle, BundleArtifact, Case, Settings, write_tensor
from ..device.run import ARTIFACTS_DIR
from ..errors import DeployError
from ..manifest import ArtifactRecord
from ..manifest_schema import inside
from ..vocabulary import Role, ScoreKind, Target
from .engine import Reference, decoder_case_id, encoder_case_id

FEEDS_DIR = "feeds"


def write_cases(directory: Path, reference: Reference) -> list[Case]:
    """Write the feeds of every parity case under ``directory/feeds``."""
    cases = []
    for image in reference.cases:
        enc_id = encoder_case_id(image.name)
        image_file = write_tensor(directory, f"{FEEDS_DIR}/{enc_id}/image.bin", image.tensor)
        cases.append(Case(enc_id, Role.ENCODER, {"image": image_file}))
        embeddings = write_tensor(
            directory, f"{FEEDS_DIR}/emb-{image.name}/image_embeddings.bin", image.ref_embeddings
        )
        for prompt in image.prompts:
            case_id = decoder_case_id(image.name, prompt.name)
            cases.append(
                Case(
                    case_id,
                    Role.DECODER,
                    {
                        "image_embeddings": embeddings,
                        "point_coords": write_tensor(
                            directory, f"{FEEDS_DIR}/{case_id}/point_coords.bin", prompt.coords
                        ),
                        "point_labels": write_tensor(
                            directory, f"{FEEDS_DIR}/{case_id}/point_labels.bin", prompt.labels
                        ),
                    },
                )
            )
    return cases


def _takes(record: ArtifactRecord, case: Case) -> bool:
    """Whether ``record`` has an input for ``case`` (per-N TFLite decoders list their point
    counts)."""
    if case.role != record.role:
        return False
    counts = record.details.get("point_counts")
    return case.role == Role.ENCODER or not counts or case.feeds["point_labels"].shape[1] in counts


def bundle_artifact(record: ArtifactRecord, cases: list[Case]) -> BundleArtifact:
    """The bundle entry of a manifest record, with the cases it takes."""
    scores = ScoreKind(record.details.get("scores", "iou")) if record.role == Role.DECODER else None
    return BundleArtifact(
        record.file,
        Target(record.target),
        Role(record.role),
        record.precision,
        record.sha256,
        [c.id for c in cases if _takes(record, c)],
        scores,
    )


def _copy(export_dir: Path, file: str, dest: Path) -> None:
    """Copy artifact ``file`` of ``export_dir`` (kept inside it, see ``inside``) to ``dest``."""
    src = inside(export_dir, file, str(export_dir))
    if not src.exists():
        raise DeployError(f"{src}: listed in the manifest but missing")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest) if src.is_dir() else shutil.copy2(src, dest)


def write_bundle(
    directory: Path,
    reference: Reference,
    records: list[ArtifactRecord],
    export_dir: Path,
    settings: Settings,
) -> Bundle:
    """Write a complete bundle: feeds of the reference's cases, the artifacts of ``records`` (copied
    from ``export_dir``) and ``protocol.json``."""
    directory = Path(directory)
    cases = write_cases(directory, reference)
    for record in records:
        _copy(Path(export_dir), record.file, directory / ARTIFACTS_DIR / record.file)
    bundle = Bundle(cases, [bundle_artifact(r, cases) for r in records], settings)
    bundle.save(directory)
    return bundle
