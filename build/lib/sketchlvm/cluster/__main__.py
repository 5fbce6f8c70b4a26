"""``python -m sketchlvm.cluster``: the same as ``sketchlvm cluster``."""

from sketchlvm.cluster.cli import main

main()
