"""Reference for ``aggregate_rewards``: masked weighted means in float32, plain torch."""
from __future__ import annotations

import torch


def aggregate_rewards(scores, weights, mode, score_max, bystander, bystander_coef, lengths, length_limit,
                      length_coef):
    x = scores.to(torch.float32) / score_max
    w = (torch.ones(x.shape[1], device=x.device) if weights is None else weights.to(torch.float32))[None, :]
    used = ~torch.isnan(x) & (w > 0)
    wsum = torch.where(used, w, 0.0).sum(dim=1)
    if mode == "mean":
        reward = torch.where(used, w * x, 0.0).sum(dim=1) / wsum
    elif mode == "harmonic":
        reward = wsum / torch.where(used, w / x, 0.0).sum(dim=1)
    elif mode == "geometric":
        reward = torch.exp(torch.where(used, w * torch.log(x), 0.0).sum(dim=1) / wsum)
    else:
        raise ValueError(f"mode must be 'mean', 'harmonic' or 'geometric'; got {mode!r}")
    reward = torch.where(wsum > 0, reward, float("nan"))
    if bystander is not None:
        reward = reward + bystander_coef * (bystander.to(torch.float32) / 100.0 - 1.0)
    if lengths is not None and length_limit is not None:
        reward = reward - length_coef * (lengths.to(torch.float32) - length_limit).clamp_min(0.0)
    return reward
