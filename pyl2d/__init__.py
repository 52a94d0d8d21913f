"""pyl2d: fast Light Latent-space Decoding (L2D) for LLM recommenders and Psychology-grounded
Empathetic Reward Modeling (PERM) for Hugging Face models."""
from pyl2d import ops
from pyl2d._backend import BACKENDS, available as available_backends
from pyl2d.ops import local_topk, pool_hidden, pooled_score_topk, score_topk, segment_mean

__version__ = "0.1.0"

__all__ = ["BACKENDS", "available_backends", "local_topk", "ops", "pool_hidden", "pooled_score_topk", "score_topk",
           "segment_mean", "__version__"]
