"""EdgeSAM in PyTorch, split by component like Meta's segment-anything ``modeling/``."""

from .edgesam import EdgeSam
from .image_encoder import RepViTEncoder
from .reparam import reparameterize_encoder

__all__ = ["EdgeSam", "RepViTEncoder", "reparameterize_encoder"]
