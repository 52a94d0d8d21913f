"""L2D end to end on Hugging Face causal LMs: data, prompts, hidden states, the item memory,
the recommender, language-space baselines, metrics, tiny-model training and the CLI."""
