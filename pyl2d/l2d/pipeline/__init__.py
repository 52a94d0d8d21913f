"""The L2D commands (demo, train, finetune, build-memory, eval, recommend): as Python functions
taking a config dataclass (:mod:`.runs`, :mod:`.config`) and as the command line
(:mod:`.cli`, flag types in :mod:`.argtypes`). The top L2D room: it imports every other."""
from pyl2d.l2d.pipeline.runs import (BuildMemoryRun, DemoRun, EvalRun, FinetuneRun, MemoryConfig, RecommendRun,
                                     RuntimeConfig, TrainRun, field_default, load_dataset, prompt_template,
                                     run_build_memory, run_demo, run_eval, run_finetune, run_recommend, run_train,
                                     seed_list, train_or_reuse)

__all__ = ["BuildMemoryRun", "DemoRun", "EvalRun", "FinetuneRun", "MemoryConfig", "RecommendRun", "RuntimeConfig",
           "TrainRun", "field_default", "load_dataset", "prompt_template", "run_build_memory", "run_demo", "run_eval",
           "run_finetune", "run_recommend", "run_train", "seed_list", "train_or_reuse"]
