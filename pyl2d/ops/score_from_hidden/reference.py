"""Reference for ``score_from_hidden``: gather the score tokens' LM-head rows, softmax, expectation."""
from __future__ import annotations

import torch


def score_from_hidden(hidden, lm_head_weight, score_token_ids, score_values):
    rows = lm_head_weight.index_select(0, score_token_ids.to(torch.int64)).to(torch.float32)
    logits = hidden.to(torch.float32) @ rows.T
    return torch.softmax(logits, dim=1) @ score_values.to(torch.float32)
