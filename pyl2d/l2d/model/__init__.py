"""The causal LM: loading a checkpoint (full or LoRA adapter) and reading its hidden states
(:mod:`.hidden`), training the tiny demo models from scratch (:mod:`.train`) and fine-tuning a
pretrained checkpoint on L2D prompts (:mod:`.finetune`). Imports only :mod:`pyl2d.l2d.data`."""
from pyl2d.l2d.model.finetune import FinetuneConfig, finetune_model
from pyl2d.l2d.model.hidden import POOLINGS, HiddenStateExtractor, load_model
from pyl2d.l2d.model.train import TRAINING_INFO, TrainConfig, train_model

__all__ = ["POOLINGS", "TRAINING_INFO", "FinetuneConfig", "HiddenStateExtractor", "TrainConfig", "finetune_model",
           "load_model", "train_model"]
