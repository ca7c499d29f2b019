"""``python -m fleet.web``: the same as ``fleet web`` (the demo starts the console this way)."""

import typer

from fleet.web.command import web

if __name__ == "__main__":
    typer.run(web)
