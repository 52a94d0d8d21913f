"""L2D end to end on Hugging Face causal LMs, in rooms that import only the ones below them:

- :mod:`pyl2d.l2d.data`: catalog, samples, D3/BIGRec and MiniOneRec folders, synthetic data, prompts;
- :mod:`pyl2d.l2d.model`: loading a checkpoint, hidden states, tiny-model training, fine-tuning;
- :mod:`pyl2d.l2d.memory`: the item memory (type, file format, lock, resumable build);
- :mod:`pyl2d.l2d.decode`: the recommender (one device or sharded) and its representation;
- :mod:`pyl2d.l2d.evaluation`: language-space baselines, metrics, spread, the calc.py convention;
- :mod:`pyl2d.l2d.pipeline`: the commands as functions and as the command line.

The public names are importable from here. Module paths from before the split (e.g.
``pyl2d.l2d.hidden``) still import, with a FutureWarning naming the new one (:mod:`._moved`)."""
import importlib as _importlib
import types as _types

from pyl2d.l2d import _moved
from pyl2d.l2d.data import Catalog, Dataset, DataSource, PromptTemplate, Sample, DEFAULT_PROMPT
from pyl2d.l2d.data import load_catalog, load_folder, load_samples, prefix_augment
from pyl2d.l2d.decode import L2DRecommender, Recommendations, Representation, ShardedL2DRecommender, parse_representation
from pyl2d.l2d.evaluation import BeamSearchDecoder, GroundedDecoder, PopularityRecommender
from pyl2d.l2d.memory import ItemMemory, MemoryBusyError, MemoryFormatError, build_memory
from pyl2d.l2d.model import FinetuneConfig, HiddenStateExtractor, finetune_model, load_model

_moved.install()

__all__ = ["BeamSearchDecoder", "Catalog", "DEFAULT_PROMPT", "DataSource", "Dataset", "FinetuneConfig", "GroundedDecoder", "HiddenStateExtractor",
           "ItemMemory", "L2DRecommender", "MemoryBusyError", "MemoryFormatError", "PopularityRecommender",
           "PromptTemplate", "Recommendations", "Representation", "Sample", "ShardedL2DRecommender", "build_memory", "finetune_model", "load_catalog", "load_folder",
           "load_model", "load_samples", "parse_representation", "prefix_augment"]


def __getattr__(name: str) -> _types.ModuleType:
    """``pyl2d.l2d.<old module>`` without an import statement (0.1.0 code did this after
    importing pyl2d.l2d): the moved module, with the same warning."""
    if name in _moved.MOVED:
        return _importlib.import_module(f"pyl2d.l2d.{name}")
    raise AttributeError(f"module 'pyl2d.l2d' has no attribute {name!r}")
