"""Recommendation data: the item catalog and (history -> next item) samples read from D3/BIGRec
CSVs (:mod:`.records`), the folder layouts that hold them, D3 and MiniOneRec
(:mod:`.folders`), the built-in synthetic data set (:mod:`.synthetic`) and the prompt template
that turns a history into model input (:mod:`.prompts`). The lowest L2D room: it imports no
other."""
from pyl2d.l2d.data.folders import TRAIN_SPLITS, Dataset, DataSource, load_folder, write_folder
from pyl2d.l2d.data.prompts import DEFAULT_PROMPT, PromptTemplate, data_fingerprint
from pyl2d.l2d.data.records import (MAX_LIST_FIELD, REQUIRED_COLUMNS, Catalog, LoadReport, Sample, latest_rows,
                                    load_catalog, load_samples, prefix_augment, sample_from_history, split_validation,
                                    with_history)
from pyl2d.l2d.data.synthetic import make_synthetic

__all__ = ["DEFAULT_PROMPT", "MAX_LIST_FIELD", "REQUIRED_COLUMNS", "TRAIN_SPLITS", "Catalog", "DataSource", "Dataset",
           "LoadReport", "PromptTemplate", "Sample", "data_fingerprint", "latest_rows", "load_catalog", "load_folder",
           "load_samples", "make_synthetic", "prefix_augment", "sample_from_history", "split_validation",
           "with_history", "write_folder"]
