"""The task runtime (entrypoint, params, progress, outcome) and one module per task kind."""
