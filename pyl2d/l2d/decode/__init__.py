"""Latent-space decoding: matching a prompt's hidden state against the item memory. The
recommender (:mod:`.recommender`; global, local and blended aggregation by :mod:`.interpolate`),
the representation fitted on the memory and applied to memory and queries
(:mod:`.representation`) and the recommender over memory shards on a process group
(:mod:`.sharded`). Imports :mod:`pyl2d.l2d.data`, :mod:`~pyl2d.l2d.model` and :mod:`~pyl2d.l2d.memory`."""
from pyl2d.l2d.decode.recommender import (AGGREGATIONS, DEFAULT_METRIC, DEFAULT_REPRESENTATION, METRICS, L2DRecommender,
                                          Recommendations)
from pyl2d.l2d.decode.representation import Representation, parse_representation
from pyl2d.l2d.decode.sharded import ShardedL2DRecommender

__all__ = ["AGGREGATIONS", "DEFAULT_METRIC", "DEFAULT_REPRESENTATION", "METRICS", "L2DRecommender", "Recommendations",
           "Representation", "ShardedL2DRecommender", "parse_representation"]
