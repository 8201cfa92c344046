"""``edgesam-deploy models``: the registry, parameter counts, licence and cache state."""

from __future__ import annotations

from rich.table import Table

from ..checkpoints import LICENSE_NOTICE, REGISTRY, cache_dir, cached_path, parameter_count
from ..modeling import EdgeSam
from .options import out_console


def models() -> None:
    """List the EdgeSAM variants, their size, licence and whether the checkpoint is cached."""
    model = EdgeSam()
    counts = {
        name: parameter_count(getattr(model, name))
        for name in ("image_encoder", "prompt_encoder", "mask_decoder")
    }
    total = sum(counts.values())
    table = Table(title=f"EdgeSAM variants (cache: {cache_dir()})")
    for col in ("variant", "description", "parameters", "licence", "cached", "url"):
        table.add_column(col)
    for v in REGISTRY.values():
        path = cached_path(v)
        table.add_row(
            v.name,
            v.description,
            f"{total / 1e6:.2f} M (encoder {counts['image_encoder'] / 1e6:.2f} M)",
            "NTU S-Lab 1.0, non-commercial",
            str(path) if path else "no",
            v.url,
        )
    console = out_console()
    console.print(table)
    console.print(
        f"[dim]{LICENSE_NOTICE} Without a checkpoint, --random-weights SEED runs every command on "
        "seeded random weights.[/dim]"
    )
