"""Evaluation: L2D against the language-space baselines (:mod:`.baselines`: beam search,
grounded generation, popularity) on a test split (:mod:`.evaluate`), Recall/NDCG
(:mod:`.metrics`), bootstrap intervals and seed spread (:mod:`.spread`) and the calc.py
convention of the published tables (:mod:`.calc_convention`). Imports the rooms below it:
data, model, memory, decode."""
from pyl2d.l2d.evaluation.baselines import BeamSearchDecoder, GroundedDecoder, PopularityRecommender
from pyl2d.l2d.evaluation.evaluate import METHODS, EvalConfig

# Not the function evaluate(): it would shadow the module of the same name (``from
# pyl2d.l2d.evaluation import evaluate`` is the module, as ``pyl2d.l2d.evaluate`` was).
__all__ = ["METHODS", "BeamSearchDecoder", "EvalConfig", "GroundedDecoder", "PopularityRecommender"]
