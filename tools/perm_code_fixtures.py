"""Run the PERM authors' reward code and pyl2d's "perm-paper" preset on the same judge replies
and write both rewards to tests/perm/fixtures/perm_code_rewards.json.

    git clone https://github.com/ZhengWwwq/PERM /tmp/perm-code   # a scratch folder, outside the repo
    python tools/perm_code_fixtures.py --perm-code /tmp/perm-code --commit <its HEAD>

The PERM code is run, not restated: its ``perm/grpo.py`` ``main()`` builds the reward
functions of the paper's run (the flags of ``perm/grpo_train.sh``), and they are called as
TRL's GRPOTrainer calls them (every function with the batch; the rewards added up). Only the
judge is replaced: ``openai.AsyncOpenAI`` answers from the case's scripted replies and records
the sampling settings and the most requests in flight. Stand-ins also replace what the reward
needs not (``wandb`` and ``dotenv``, logging only; ``peft.LoraConfig``, used only with
``--use_lora``; and TRL's ``GRPOConfig`` / ``GRPOTrainer``, whose construction is where the
reward functions are captured instead of training). Nothing
of the PERM code is copied here or into the fixture: the fixture holds our replies and the
numbers each code gave.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import pathlib
import re
import sys
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "perm" / "fixtures" / "perm_code_rewards.json"
DIMENSIONS = ("resonation", "expression", "reception", "bystander")
PERSPECTIVE = {"resonation": "supporter/resonation", "expression": "supporter/expression",
               "reception": "seeker/reception", "bystander": "bystander/quality"}


def bystander(total: str, sub=(16, 15, 17, 16, 16)) -> str:
    names = ("Content Effectiveness", "Logical Structure & Clarity", "Communication Efficiency",
             "Objectivity & Neutrality", "Information Accuracy & Verifiability")
    lines = [f"- {n}: {s} / 20 - fine" for n, s in zip(names, sub)]
    return "1. Overall Assessment:\nClear and useful.\n\n2. Dimension Scores and Rationales:\n" + "\n".join(lines) \
        + f"\n\n3. {total}"


BASE = {  # two prompts x two completions; every reply readable by both codes
    "resonation": ["Reason: names the fear.\nScore: 4", "Reason: surface only.\nScore: 2", "Reason: deep.\nScore: 5",
                   "Reason: accurate.\nScore: 3"],
    "expression": ["Reason: natural.\nScore: 3", "Reason: artful.\nScore: 5", "Reason: warm.\nScore: 4",
                   "Reason: generic.\nScore: 2"],
    "reception": ["Reason: moved.\nScore: 5", "Reason: relieved.\nScore: 3", "Reason: alienated.\nScore: 1",
                  "Reason: supported.\nScore: 4"],
    "bystander": [bystander("Total Score: 80 / 100"), bystander("Total Score: 35 / 100"),
                  bystander("Total Score: 60 / 100"), bystander("Total Score: 90 / 100")],
}
LENGTHS = [120, 800, 768, 1000]
FAIL = {"fail": True}  # the judge call raises (connection error) on every attempt


def case(name, what, dimension=None, reply=None, *, replies=None):
    r = {d: list(v) for d, v in BASE.items()}
    if dimension is not None:
        r[dimension][0] = reply
    for d, v in (replies or {}).items():
        r[d] = v
    return {"name": name, "what": what, "replies": r, "lengths": LENGTHS}


CASES = [
    case("all_valid", "every reply readable by both"),
    case("two_scores", "two Score lines: 2, then 4", "resonation", "Score: 2\nReason: on reflection, deeper.\nScore: 4"),
    case("echoed_example", "the verdict 4, then the prompt's example echoed (Score: 3)", "resonation",
         "Reason: nuanced.\nScore: 4\n\ne.g.,\nReason: ...\nScore: 3"),
    case("no_space", "Score:4", "resonation", "Reason: nuanced.\nScore:4"),
    case("plus_sign", "Score: +4", "resonation", "Reason: nuanced.\nScore: +4"),
    case("colon_after", "Score: 4: strong", "resonation", "Reason: nuanced.\nScore: 4: strong"),
    case("bold_label", "**Score:** 4", "resonation", "Reason: nuanced.\n**Score:** 4"),
    case("fraction", "Score: 4/5", "resonation", "Reason: nuanced.\nScore: 4/5"),
    case("rating", "Rating: 4", "resonation", "Reason: nuanced.\nRating: 4"),
    case("final_score", "Final Score: 4", "resonation", "Reason: nuanced.\nFinal Score: 4"),
    case("lowercase", "score: 4", "resonation", "Reason: nuanced.\nscore: 4"),
    case("indented", "  Score: 4 (indented)", "resonation", "Reason: nuanced.\n  Score: 4"),
    case("brackets", "Score: [4]", "resonation", "Reason: nuanced.\nScore: [4]"),
    case("trailing_words", "Score: 4 (good)", "resonation", "Reason: nuanced.\nScore: 4 (good)"),
    case("trailing_period", "Score: 4.", "resonation", "Reason: nuanced.\nScore: 4."),
    case("decimal", "Score: 3.5", "resonation", "Reason: between levels.\nScore: 3.5"),
    case("unreadable", "no score at all", "resonation", "I cannot rate this."),
    case("empty_reply", "an empty reply", "resonation", ""),
    case("failed_call", "the judge call fails every attempt", "resonation", FAIL),
    case("truncated", "Score: 3 early, then cut off at max_tokens", "resonation",
         {"text": "Score: 3\nReason: The analysis is accurate but stays on the surf", "finish_reason": "length"}),
    case("out_of_range", "Score: 7 on 1-5", "resonation", "Reason: exceptional.\nScore: 7"),
    case("zero", "Score: 0 on 1-5", "resonation", "Reason: none.\nScore: 0"),
    case("negative", "Score: -1 on 1-5", "resonation", "Reason: harmful.\nScore: -1"),
    case("fullwidth_digit", "Score: \uff14 (full-width 4)", "resonation", "Reason: nuanced.\nScore: \uff14"),
    case("arabic_indic_digit", "Score: \u0664 (Arabic-Indic 4)", "resonation", "Reason: nuanced.\nScore: \u0664"),
    case("underscore_number", "Score: 1_0", "resonation", "Reason: odd.\nScore: 1_0"),
    case("mixed_number", "Score: 2 \u00bd", "resonation", "Reason: between.\nScore: 2 \u00bd"),
    case("thousands", "Score: 1 000", "resonation", "Reason: odd.\nScore: 1 000"),
    case("all_resonation_unreadable", "no resonation reply in the batch is readable", None,
         replies={"resonation": ["I cannot rate this."] * 4}),
    case("one_completion_unreadable", "every empathy reply of completion 0 unreadable", None,
         replies={d: ["n/a"] + BASE[d][1:] for d in ("resonation", "expression", "reception")}),
    case("bystander_no_spaces", "Total score: 80/100", "bystander", bystander("Total score: 80/100")),
    case("bystander_unreadable", "the bystander gives no total", "bystander",
         "1. Overall Assessment:\nClear.\n\n(no scores given)"),
    case("bystander_only_subscores", "sub-scores but no total line", "bystander",
         bystander("").rsplit("\n\n3. ", 1)[0]),
    case("bystander_wrong_denominator", "Total Score: 17 / 20", "bystander", bystander("Total Score: 17 / 20")),
    case("bystander_over_100", "Total Score: 150 / 100", "bystander", bystander("Total Score: 150 / 100")),
    case("bystander_decimal", "Total Score: 85.5 / 100", "bystander", bystander("Total Score: 85.5 / 100")),
    case("bystander_bold", "**Total Score:** 80 / 100", "bystander", bystander("**Total Score:** 80 / 100")),
    case("bystander_subtotal_first", "Subtotal score: 50 / 100, then Total Score: 80 / 100", "bystander",
         bystander("Subtotal score: 50 / 100\nTotal Score: 80 / 100")),
    case("bystander_two_totals", "Total Score: 70 / 100, later Total Score: 90 / 100", "bystander",
         bystander("Total Score: 70 / 100\n(revised) Total Score: 90 / 100")),
    case("bystander_fullwidth", "Total Score: \uff18\uff10 / 100 (full-width 80)", "bystander",
         bystander("Total Score: \uff18\uff10 / 100")),
    case("all_bystander_unreadable", "no bystander reply in the batch is readable", None,
         replies={"bystander": ["no total"] * 4}),
]

# Why the two codes differ where they do (a case missing here must give equal rewards).
READS_MORE = "pyl2d reads this verdict; the PERM code cannot and imputes it"
WHY = {
    **{n: READS_MORE for n in ("bold_label", "fraction", "rating", "final_score", "lowercase", "indented", "brackets",
                               "trailing_words", "trailing_period", "decimal", "bystander_decimal", "bystander_bold")},
    "truncated": "defect kept: the PERM code parses a reply cut off at max_tokens; pyl2d imputes it",
    **{n: "defect kept: no range check in the PERM code (harmonic mode skips scores <= 0); pyl2d imputes it"
       for n in ("out_of_range", "zero", "negative", "underscore_number", "bystander_wrong_denominator",
                 "bystander_over_100")},
    **{n: "defect kept: the PERM code reads non-ASCII digits; pyl2d imputes them"
       for n in ("fullwidth_digit", "arabic_indic_digit", "bystander_fullwidth")},
    **{n: "defect kept: the PERM code raises (the training step fails); pyl2d leaves the perspective NaN"
       for n in ("all_resonation_unreadable", "all_bystander_unreadable")},
    "bystander_subtotal_first": "pyl2d reads whole-word labels only; the PERM code takes 'Subtotal score' as the total",
}
_MARK = re.compile(r"\[c(\d+)\]")


def completion(i: int) -> str:
    return f"# Analysis\nThe seeker feels alone [c{i}].\n# Response\nThat sounds hard [c{i}]."


def reply_of(replies: dict, messages) -> tuple[str | dict, str]:
    text = "\n".join(m["content"] for m in messages)
    i = int(_MARK.search(text).group(1))
    if "third-party dialogue evaluator" in text or "Total Score" in text and "Dimension" not in text:
        dim = "bystander"
    else:
        dim = re.search(r"\*\*Dimension:\*\* (\w+)", text).group(1)
    return replies[dim][i], dim


# --------------------------------------------------------------------------- the PERM code
class _Captured(Exception):
    pass


def load_perm_code(perm_dir: pathlib.Path, observed: dict):
    """main() of the PERM code's grpo.py with the paper's flags: its reward functions."""
    sys.path.insert(0, str(perm_dir / "perm"))
    state = {"replies": None, "in_flight": 0}

    class _Completions:
        async def create(self, *, model, messages, temperature, top_p, max_tokens):
            observed["sampling"].add((temperature, top_p, max_tokens))
            state["in_flight"] += 1
            observed["max_in_flight"] = max(observed["max_in_flight"], state["in_flight"])
            try:
                await asyncio.sleep(0.01)
                reply, _ = reply_of(state["replies"], messages)
                if isinstance(reply, dict) and reply.get("fail"):
                    raise ConnectionError("scripted failure")
                text, finish = (reply["text"], reply["finish_reason"]) if isinstance(reply, dict) else (reply, "stop")
                msg = types.SimpleNamespace(content=text)
                return types.SimpleNamespace(choices=[types.SimpleNamespace(message=msg, finish_reason=finish)])
            finally:
                state["in_flight"] -= 1

    class AsyncOpenAI:
        def __init__(self, api_key=None, base_url=None):
            self.chat = types.SimpleNamespace(completions=_Completions())

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return False

    captured = {}

    class GRPOTrainer:
        def __init__(self, *, reward_funcs, **kwargs):
            captured["reward_funcs"] = reward_funcs
            raise _Captured

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m

    module("openai", AsyncOpenAI=AsyncOpenAI)
    module("wandb", init=lambda **k: None, finish=lambda: None)
    module("dotenv", load_dotenv=lambda *a, **k: None)
    module("trl", GRPOConfig=lambda **kwargs: kwargs, GRPOTrainer=GRPOTrainer)
    module("peft", LoraConfig=lambda **kwargs: kwargs)  # used only with --use_lora
    import grpo  # the PERM code

    scratch = pathlib.Path("/tmp/perm-code-run")
    scratch.mkdir(exist_ok=True)
    data = scratch / "train.jsonl"
    data.write_text(json.dumps({"persona": {"identity": "a nurse"}, "scenario": "night shift",
                                "dialogue": ["I feel alone"]}) + "\n")
    # perm/grpo_train.sh's reward flags (the paper's run)
    sys.argv = ["grpo.py", "--train_data_path", str(data), "--output_dir", str(scratch / "out"),
                "--model_name", "policy", "--reward_model_type", "oai",
                "--reward_generation_kwargs", json.dumps({"model_name": "judge", "api_key": "none",
                                                           "base_url": "http://127.0.0.1:9/v1"}),
                "--calculate_score_mode", "harmonic", "--max_completion_length", "1024",
                "--use_length_penalty", "--length_penalty_limit", "768", "--length_penalty_coef", "0.001",
                "--use_standby_reward", "--standby_reward_coef", "0.5"]
    try:
        grpo.main()
    except _Captured:
        pass
    return captured["reward_funcs"], state


def perm_code_rewards(funcs, state, c) -> list[float] | dict:
    state["replies"] = c["replies"]
    n = len(c["lengths"])
    kwargs = dict(prompts=[f"prompt {i // 2}" for i in range(n)],
                  completions=[[{"role": "assistant", "content": completion(i)}] for i in range(n)],
                  completion_ids=[[7] * t for t in c["lengths"]], query=[f"query {i // 2}" for i in range(n)],
                  scenario=["night shift"] * n, persona=["a nurse"] * n)
    total = [0.0] * n
    try:
        for f in funcs:  # TRL adds the reward functions up (reward_weights 1)
            total = [a + float(b) for a, b in zip(total, f(**kwargs))]
    except Exception as exc:
        return {"raises": f"{type(exc).__name__}: {exc}"}
    return total


# --------------------------------------------------------------------------- pyl2d
def pyl2d_rewards(c) -> list[float]:
    sys.path.insert(0, str(ROOT))
    from pyl2d.perm import PERMReward
    from pyl2d.perm.judges import TextJudge
    from pyl2d.perm.scores import ERROR, OK, TRUNCATED

    class Replay(TextJudge):
        async def complete(self, request):
            text = "\n".join(m["content"] for m in request.messages)
            reply = c["replies"][PERSPECTIVE_INV[request.perspective.name]][int(_MARK.search(text).group(1))]
            if isinstance(reply, dict):
                if reply.get("fail"):
                    return None, ERROR
                return reply["text"], TRUNCATED if reply["finish_reason"] == "length" else OK
            return reply, OK

    reward = PERMReward.from_preset("perm-paper", Replay())
    n = len(c["lengths"])
    return reward(prompts=[f"prompt {i // 2}" for i in range(n)], completions=[completion(i) for i in range(n)],
                  completion_ids=[[7] * t for t in c["lengths"]])


PERSPECTIVE_INV = {v: k for k, v in PERSPECTIVE.items()}


def _clean(values):
    if isinstance(values, dict):
        return values
    return [None if math.isnan(v) else round(v, 9) for v in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--perm-code", type=pathlib.Path, required=True, help="a checkout of ZhengWwwq/PERM")
    parser.add_argument("--commit", required=True, help="the checkout's commit")
    parser.add_argument("--output", type=pathlib.Path, default=FIXTURE)
    args = parser.parse_args()
    observed = {"sampling": set(), "max_in_flight": 0}
    funcs, state = load_perm_code(args.perm_code.resolve(), observed)
    # 64 prompts at once, to see the code's concurrency limit (replies are all readable).
    wide = {"name": "concurrency", "replies": {d: [v[i % 4] for i in range(100)] for d, v in BASE.items()},
            "lengths": [100] * 100}
    perm_code_rewards(funcs, state, wide)
    cases = []
    for c in CASES:
        ours = _clean(pyl2d_rewards(c))
        theirs = _clean(perm_code_rewards(funcs, state, c))
        same = isinstance(theirs, list) and all(
            (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-6)
            for a, b in zip(ours, theirs))
        if same == (c["name"] in WHY):
            raise SystemExit(f"case {c['name']}: {'equal' if same else 'different'} rewards, but WHY "
                             f"{'explains a difference' if same else 'has no reason'}")
        cases.append({**c, "perm_code": theirs, "pyl2d": ours, "same": same, "why": WHY.get(c["name"])})
        print(f"{c['name']:32s} {'same' if same else 'DIFFERS'}  perm={theirs}  pyl2d={ours}", file=sys.stderr)
    (temperature, top_p, max_tokens), = observed["sampling"]
    out = {"source": {"repository": "https://github.com/ZhengWwwq/PERM", "commit": args.commit,
                      "ran": "perm/grpo.py main() with perm/grpo_train.sh's reward flags; openai.AsyncOpenAI "
                             "mocked (tools/perm_code_fixtures.py)"},
           "perm_code_sampling": {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                                  "max_in_flight": observed["max_in_flight"]},
           "completions": "tools/perm_code_fixtures.py completion(i): two prompts x two completions",
           "cases": cases}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
