"""``python -m tinytl``: the same command line as the ``tinytl`` script (see ``tinytl/cli.py``)."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
