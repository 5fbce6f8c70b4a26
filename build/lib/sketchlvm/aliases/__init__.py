"""Old ``python -m sketchlvm.<tool>`` commands, kept working for one release as aliases of ``sketchlvm <tool>``.

``sketchlvm/__init__.py`` adds this folder to the package's search path, so ``python -m sketchlvm.train`` finds
``aliases/train.py`` without five more modules at the package's top level. Each alias says what replaced it.
May import only ``sketchlvm.cli``. Remove this folder in the release after 0.2.
"""

import sys


def run_as(subcommand: str) -> None:
    from sketchlvm.cli import run

    print(f"note: 'python -m sketchlvm.{subcommand}' is now 'sketchlvm {subcommand}' "
          f"(or 'python -m sketchlvm {subcommand}'); the old form goes in the next release", file=sys.stderr)
    sys.exit(run(subcommand, sys.argv[1:]))
