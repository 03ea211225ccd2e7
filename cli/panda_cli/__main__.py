"""`python -m panda_cli` runs the same command as `panda`."""

from panda_cli.main import app

app(prog_name="panda")
