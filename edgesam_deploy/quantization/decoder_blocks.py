"""The blocks of the traced ONNX decoder (the rewrite of ``modeling/decoder_fast.py``), as scopes.

The tracer names a node after the module whose ``forward`` called it, but the rewrite calls the
transformer's submodules from its own functions (``two_way_block``, ``token_to_image``), so the
two layers' attentions share names (``/fast/self_attn/...``, ``/fast/q_proj_1/...``) and the
products of two activations carry no module at all (``/fast/MatMul_7``). The blocks are found from
the graph instead, and every node is renamed under its block's scope ``/decoder/<block>/`` (node
names only: tensors, inputs and outputs keep theirs), so that the encoder's machinery (exclusion
by scope, profiles summed by scope) serves the decoder unchanged:

- ``prompt``: the prompt encoder, i.e. the nodes outside the rewritten mask decoder (``/fast/``,
  ``graphs.DecoderGraph.fast``) computed from ``point_coords`` / ``point_labels`` alone (the
  Fourier encoding, the label embeddings);
- ``hypernetworks``, ``iou_head``, ``upscaling``: the nodes of those modules (their names say so);
- ``layer<i>.self_attn``, ``layer<i>.token_to_image``, ``layer<i>.mlp``,
  ``layer<i>.image_to_token``, ``final_attn``: every other node belongs to the block of the first
  LayerNormalization it feeds (each of these ends with its residual's norm: ``norm1`` ... ``norm4``
  of a two-way layer, ``norm_final_attn``); the upscaling's own norm counts as ``upscaling``.
"""

from __future__ import annotations

import re

import onnx

from .onnx_quant import nodes_fed_only_by

SCOPE_PREFIX = "/decoder/"
MASK_DECODER = "/fast/"  # the scope of graphs.DecoderGraph.fast, the rewritten mask decoder
PROMPT = "prompt"
# a node named under one of these modules is in that block, wherever its data flows
_NAMED = (
    ("/output_hypernetworks_mlps", "hypernetworks"),
    ("/iou_prediction_head/", "iou_head"),
    ("/upscaling/", "upscaling"),
)
# the LayerNormalization that closes a block: norm<k> of layer 0, norm<k>_1 of layer 1
_NORM = re.compile(r"/(norm([1-4])(?:_(\d+))?|norm_final_attn)/LayerNormalization$")
_PART = {"1": "self_attn", "2": "token_to_image", "3": "mlp", "4": "image_to_token"}
BLOCK_ORDER = (
    PROMPT,
    *(f"layer{i}.{part}" for i in (0, 1) for part in _PART.values()),
    "final_attn",
    "upscaling",
    "hypernetworks",
    "iou_head",
)
BLOCK_NAME = re.compile("|".join(re.escape(b) for b in BLOCK_ORDER))


def _norm_block(name: str) -> str | None:
    """The block a LayerNormalization node called ``name`` closes (None: not a block's norm)."""
    match = _NORM.search(name)
    if match is None:
        return None
    if match.group(1) == "norm_final_attn":
        return "final_attn"
    return f"layer{match.group(3) or 0}.{_PART[match.group(2)]}"


def decoder_node_blocks(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> block name for every node of the traced decoder that belongs to a block."""
    rank = {b: i for i, b in enumerate(BLOCK_ORDER)}
    points = [i.name for i in model.graph.input if i.name in ("point_coords", "point_labels")]
    prompt = [n for n in nodes_fed_only_by(model, points) if not n.startswith(MASK_DECODER)]
    owner = dict.fromkeys(prompt, PROMPT)
    for node in model.graph.node:
        is_norm = node.op_type == "LayerNormalization"
        block = next((b for key, b in _NAMED if key in node.name), None) or (
            _norm_block(node.name) if is_norm else None
        )
        if block and node.name not in owner:
            owner[node.name] = block
    # every other node: the block of the first norm it feeds (consumers before producers)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    feeds: dict[str, set[str]] = {}  # node -> blocks of the norms it reaches first
    for node in reversed(model.graph.node):
        reached: set[str] = set()
        for out in node.output:
            for c in consumers.get(out, []):
                closes = owner.get(c.name) if c.op_type == "LayerNormalization" else None
                reached |= {closes} if closes else feeds.get(c.name, set())
        feeds[node.name] = reached
        if node.name not in owner and reached:
            owner[node.name] = min(reached, key=rank.__getitem__)
    return owner


def scoped_decoder(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with each block's nodes renamed ``/decoder/<block>/<old name>``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    owner = decoder_node_blocks(model)
    for node in out.graph.node:
        if node.name in owner:
            node.name = f"{SCOPE_PREFIX}{owner[node.name]}{node.name}"
    return out
