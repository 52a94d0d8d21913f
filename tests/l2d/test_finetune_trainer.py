"""The compact LM head of `pyl2d finetune` (only title positions are projected) gives TRL's
loss, gradients and metrics; the precision and max-length choices of finetune are checked."""
import pytest
import torch

pytest.importorskip("trl")

from pyl2d.l2d.model import finetune, precision  # noqa: E402
from pyl2d.l2d.model.finetune_trainer import compact_head_outputs  # noqa: E402


def test_compact_head_equals_the_full_logits_loss_and_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(12, 37, bias=False)
    hidden = torch.randn(3, 7, 12, requires_grad=True)
    labels = torch.randint(0, 37, (3, 7))
    labels[0, :5] = -100
    labels[2, :] = -100  # a row without labels
    log_probs, entropy, is_top1, mask = compact_head_outputs(hidden, labels, head)
    loss = -log_probs.sum() / mask.sum()
    loss.backward()
    grad, hidden.grad = hidden.grad.clone(), None
    logits = head(hidden)
    full = torch.nn.functional.cross_entropy(logits.reshape(-1, 37), labels.reshape(-1), ignore_index=-100)
    full.backward()
    assert torch.allclose(loss, full, atol=1e-6) and torch.allclose(grad, hidden.grad, atol=1e-6)
    logp = logits.log_softmax(-1)
    assert torch.allclose(entropy[mask], -(logp.exp() * logp).sum(-1)[mask], atol=1e-5)
    assert (entropy[~mask] == 0).all() and (log_probs[~mask] == 0).all()
    assert torch.equal(is_top1[mask], (logits.argmax(-1) == labels)[mask])


def test_bf16_on_a_cpu_needs_native_support(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: None)
    with pytest.raises(ValueError, match="neither AMX nor AVX512-BF16"):
        precision.resolve_precision("bf16", "cpu")
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        precision.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.resolve_precision("int8", "cpu")
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.torch_dtype("auto", "cpu") is torch.float32
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: "AVX512-BF16")
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    assert precision.torch_dtype("bf16", "cpu") is torch.bfloat16


def test_cpu_bf16_support_reads_the_cpu_flags():
    caps = torch.cpu.get_capabilities()
    expected = "AMX" if caps.get("amx_bf16") else "AVX512-BF16" if caps.get("avx512_bf16") else None
    if caps.get("architecture") == "x86_64":
        assert precision.cpu_bf16_support() == expected


def test_rows_over_max_length_are_left_out_with_a_count_and_none_fitting_is_refused(tiny_model):
    _, tok = tiny_model
    from pyl2d.l2d.data import Sample
    from pyl2d.l2d.data.prompts import DEFAULT_PROMPT

    rows = [Sample(history_ids=(0,) * n, history_titles=("item",) * n, target_id=1, target_title="a title")
            for n in (1, 2, 8)]
    logged = []
    full, limit = finetune._dataset(rows, tok, DEFAULT_PROMPT, None, logged.append)
    lengths = [len(r) for r in full["input_ids"]]
    assert len(lengths) == 3 and limit == max(lengths) and not logged  # the default fits every row
    kept, _ = finetune._dataset(rows, tok, DEFAULT_PROMPT, sorted(lengths)[1], logged.append)
    assert len(kept) == 2 and "1 of 3 training rows" in logged[0]
    assert [len(r) for r in kept["input_ids"]] == sorted(lengths)[:2]  # kept whole, never cut
    with pytest.raises(ValueError, match=f"--max-length {min(lengths) - 1} is below every training row"):
        finetune._dataset(rows, tok, DEFAULT_PROMPT, min(lengths) - 1, logged.append)
