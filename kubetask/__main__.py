"""`python -m kubetask`: the CLI."""

from kubetask.cli import app

app(prog_name="kubetask")
