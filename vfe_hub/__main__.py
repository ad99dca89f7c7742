"""``python -m vfe_hub``: the ``vfe-hub`` command line."""
import sys

from .cli import main

sys.exit(main())
