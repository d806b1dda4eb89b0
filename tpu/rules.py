"""Rules tables: the model's logical axis names -> mesh axes (`data`, `fsdp`, `tensor`).

A name that no rule names, or whose mesh axes are already used by an earlier dimension of the
same array, is replicated (tpu/logical.py). So an activation (batch, length, embed) is split by
rows over data x fsdp and whole along `embed`, while a weight (embed, mlp) is split over fsdp
and tensor: the weights are gathered layer by layer inside the scan (FSDP), the batch never is.

TRAIN    training: weights, gradients and optimizer state sharded over fsdp (and tensor);
         the batch over data x fsdp.
DECODE   sampling: weights only split over tensor (a decode step reads every weight once per
         token, so gathering them over fsdp each step would cost more than it saves); the batch
         and the KV cache by rows over data x fsdp.
"""

from __future__ import annotations

Rules = tuple[tuple[str, str | tuple[str, ...]], ...]

BATCH = ("data", "fsdp")

_TENSOR_SPLIT: Rules = (
    ("heads", "tensor"), ("kv_heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"),
    ("vision_heads", "tensor"), ("vision_mlp", "tensor"), ("vision_merge_out", "tensor"),
)

TRAIN: Rules = (
    ("batch", BATCH),
    ("vision_tokens", BATCH),
    ("embed", "fsdp"), ("vision_embed", "fsdp"), ("vision_merge", "fsdp"), ("vision_patch", "fsdp"),
) + _TENSOR_SPLIT

DECODE: Rules = (
    ("batch", BATCH),
    ("vision_tokens", BATCH),
) + _TENSOR_SPLIT
