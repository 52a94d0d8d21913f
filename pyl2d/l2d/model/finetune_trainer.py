"""The LM head of ``pyl2d finetune``'s loss: only the labelled (title) positions are projected.

TRL's ``SFTTrainer`` patches the model's forward with a chunked ("fused") LM head that, on
CUDA/XPU, projects only the positions that carry a label. Everywhere else (the CPU included)
it projects every position of the padded batch through the whole vocabulary, in forward and
again in backward, and folds each ``[tokens, 32768]`` tile with a dozen element-wise torch
passes (log-sum-exp, entropy, the arg-max of its logged token accuracy). In pyl2d's rows the
prompt is ~90% of the tokens and carries no label, and issue 26 measured a CPU step of
SmolLM2-135M (49k vocabulary, batch 8 x ~240 tokens) at ~4x a plain PyTorch + peft step (the
head's share was read from TRL's code, not profiled; see bench/results/finetune_step.md).

:func:`use_compact_head` replaces that patched forward by one that runs the backbone, keeps
the hidden states of the labelled positions and projects those alone, returning what TRL's
returns (per-position log-probabilities, entropy and top-1 hits, zero elsewhere), so TRL's own
loss, its normalisation over gradient accumulation and processes, and its logged metrics are
unchanged: the same numbers TRL computes on a GPU. Models whose logits are transformed after
the head (soft-capping, logit scales), MoE routers and pre-shifted labels keep TRL's forward.
"""
from __future__ import annotations

import types

# Config fields that change the logits after the LM head: a model with one set keeps TRL's head.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def _plain_head(model) -> bool:
    """True when ``model``'s logits are its LM head's output as is."""
    config = model.config.get_text_config()
    return (all(getattr(config, name, None) in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)
            and not getattr(config, "output_router_logits", False)
            and getattr(model, "base_model_prefix", "") and model.get_output_embeddings() is not None)


def compact_head_outputs(hidden, labels, lm_head):
    """(log_probs, entropy, is_top1, mask), each ``labels.shape``: the log-probability of each
    label (-100: none, 0 there) from ``lm_head`` on the matching rows of ``hidden`` alone;
    entropy and top-1 hits (no gradient) for TRL's metrics. ``hidden`` and ``labels`` are
    already aligned (position t predicts ``labels[:, t]``)."""
    import torch

    mask = labels != -100
    targets = labels[mask]
    logits = lm_head(hidden[mask]).float()  # [n_labels, vocab]: the only projection
    log_z = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    log_probs = picked.new_zeros(mask.shape).masked_scatter(mask, picked)  # keeps the graph even when empty
    with torch.no_grad():
        p = torch.softmax(logits, dim=-1)
        ent = log_z - (p * logits).sum(-1)
        # argmax takes the first maximum, as TRL's accuracy does (a tie with an earlier token is no hit)
        top1 = logits.argmax(-1) == targets
        entropy = ent.new_zeros(mask.shape).masked_scatter(mask, ent)
        is_top1 = torch.zeros(mask.shape, dtype=torch.bool, device=mask.device).masked_scatter(mask, top1)
    return log_probs, entropy, is_top1, mask


def use_compact_head(trainer) -> bool:
    """Replace the fused LM head TRL's ``SFTTrainer`` patched into ``trainer.model`` by the
    compact one (see the module); False (nothing changed) where the model needs TRL's, or
    where TRL has no fused head (before 1.x, e.g. the oldest supported 0.25, it calls the
    model's own forward)."""
    try:
        from trl.trainer.utils import FusedCausalLMOutput
    except ImportError:
        return False

    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    trl_forward = model.__dict__.get("forward")  # TRL sets it on the instance
    if trl_forward is None or not _plain_head(model):
        return False

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head or labels is None or shift_labels is not None:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        lm_head = self.get_output_embeddings()
        log_probs, entropy, is_top1, mask = compact_head_outputs(hidden.to(lm_head.weight.device),
                                                                 labels[:, 1:].to(lm_head.weight.device), lm_head)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(loss=-log_probs.sum() / count, log_probs=log_probs, entropy=entropy,
                                   is_top1=is_top1, label_mask=mask)

    model.forward = types.MethodType(forward, model)
    return True
