"""``python -m hakube``: the ``hakube`` command (``hakube.cli``)."""

import sys

from .cli import main

sys.exit(main())
