"""L2D end to end on Hugging Face causal LMs: data (D3/BIGRec and MiniOneRec folders), prompts,
fine-tuning a pretrained checkpoint (full or LoRA), hidden states, the item memory, the
recommender (one device or sharded over a process group), language-space baselines, metrics
(pyl2d's and the calc.py convention of the published tables), tiny-model training and the CLI."""
from pyl2d.l2d.baselines import BeamSearchDecoder, GroundedDecoder, PopularityRecommender
from pyl2d.l2d.data import Catalog, Sample, load_catalog, load_samples, prefix_augment
from pyl2d.l2d.folders import Dataset, DataSource, load_folder
from pyl2d.l2d.finetune import FinetuneConfig, finetune_model
from pyl2d.l2d.hidden import HiddenStateExtractor, load_model
from pyl2d.l2d.memory import ItemMemory, MemoryBusyError, MemoryFormatError, build_memory
from pyl2d.l2d.prompts import DEFAULT_PROMPT, PromptTemplate
from pyl2d.l2d.recommender import L2DRecommender, Recommendations
from pyl2d.l2d.representation import Representation, parse_representation
from pyl2d.l2d.sharded import ShardedL2DRecommender

__all__ = ["BeamSearchDecoder", "Catalog", "DEFAULT_PROMPT", "DataSource", "Dataset", "FinetuneConfig", "GroundedDecoder", "HiddenStateExtractor",
           "ItemMemory", "L2DRecommender", "MemoryBusyError", "MemoryFormatError", "PopularityRecommender",
           "PromptTemplate", "Recommendations", "Representation", "Sample", "ShardedL2DRecommender", "build_memory", "finetune_model", "load_catalog", "load_folder",
           "load_model", "load_samples", "parse_representation", "prefix_augment"]
