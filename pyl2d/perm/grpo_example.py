"""GRPO with the PERM empathetic reward in TRL (optional dependency: pip install "pyl2d-kernels[trl]").

Serve a judge with any OpenAI-compatible server, e.g.

    vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000

then train a policy on a dataset with a ``prompt`` column (plain text or chat messages) and
optional ``persona``, ``scenario`` and ``query`` columns:

    OPENAI_API_KEY=... python -m pyl2d.perm.grpo_example --policy Qwen/Qwen2.5-0.5B-Instruct \\
        --data dialogues.jsonl --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct

The key is read from the environment by the judge at request time; it is never written into the
run's config or logs. ``--preset perm-paper`` (the default) uses the PERM paper's settings
(pyl2d.perm.presets: harmonic mean, bystander coefficient 0.5, 0.001 per token beyond 768
tokens, the judge's sampling); ``--async``
hands TRL the coroutine form of the reward (its async reward path). On a CPU-only machine:
``--cpu --precision fp32 --max-completion-length 32 --num-generations 2 --max-steps 1``.
"""
from __future__ import annotations

import argparse

SYSTEM = ("You are a supportive listener. First write '# Analysis' with your understanding of the "
          "person's feelings and needs, then '# Response' with your reply to them.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="policy model name or path")
    parser.add_argument("--data", required=True, help="JSONL with persona, scenario, query (and optionally prompt)")
    parser.add_argument("--judge-url", required=True)
    parser.add_argument("--judge-model", required=True)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY")
    parser.add_argument("--output-dir", default="runs/grpo-perm")
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--max-completion-length", type=int, default=768)
    parser.add_argument("--preset", default="perm-paper", help="PERMReward preset (pyl2d.perm.presets.PRESETS)")
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16",
                        help="training precision (fp32 on a CPU without bf16 support)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU (tiny settings only)")
    parser.add_argument("--async", dest="use_async", action="store_true", help="use the async reward path")
    args = parser.parse_args()

    import trl
    from datasets import load_dataset
    from packaging.version import Version
    from trl import GRPOConfig, GRPOTrainer

    if args.use_async and Version(trl.__version__) < Version("0.27"):
        parser.error(f"--async needs TRL 0.27 or later (this is {trl.__version__}): older GRPOTrainers "
                     "do not await reward functions")

    from pyl2d.perm import OpenAIJudge, PERMReward
    from pyl2d.perm.presets import check_preset, judge_options

    try:
        check_preset(args.preset)
    except ValueError as exc:
        parser.error(f"--preset: {exc}")

    dataset = load_dataset("json", data_files=args.data, split="train")
    if "prompt" not in dataset.column_names:
        dataset = dataset.map(lambda row: {"prompt": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"(About me: {row['persona']}. {row['scenario']})\n{row['query']}"}]})

    judge = OpenAIJudge(args.judge_url, args.judge_model, api_key_env=args.api_key_env,
                        **{"concurrency": 64, "timeout": 60.0, "max_retries": 4, **judge_options(args.preset)})
    reward = PERMReward.from_preset(args.preset, judge, missing_section="empty", name="perm")
    # Fail now, not hours into training, when the judge is down or refuses the key.
    reward(prompts=["hi"], completions=["# Analysis\nA greeting.\n# Response\nHello!"])
    if judge.fatal:
        raise SystemExit(f"judge not usable: {judge.fatal}")

    config = GRPOConfig(output_dir=args.output_dir, num_generations=args.num_generations,
                        per_device_train_batch_size=args.num_generations, max_steps=args.max_steps,
                        max_completion_length=args.max_completion_length, learning_rate=1e-6, logging_steps=1,
                        scale_rewards="group", use_cpu=args.cpu, bf16=args.precision == "bf16",
                        fp16=args.precision == "fp16")
    trainer = GRPOTrainer(model=args.policy, reward_funcs=[reward.as_async() if args.use_async else reward],
                          args=config, train_dataset=dataset)
    trainer.train()
    print("invalid judge scores per perspective:", reward.counter.as_dict())


if __name__ == "__main__":
    main()
