"""cuda backend: one module per op, each exposing a function named like the op."""
