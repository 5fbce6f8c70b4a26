"""``python -m sketchlvm SUBCOMMAND ...``: the same as the ``sketchlvm`` command."""

import sys

from sketchlvm.cli import main

sys.exit(main())
