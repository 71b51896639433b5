"""One module per task kind; each exposes `run(params, context) -> result`."""
