"""``python -m sketchlvm.checkpoint``: an alias of ``sketchlvm checkpoint`` for one release."""

if __name__ == "__main__":
    from sketchlvm.aliases import run_as

    run_as("checkpoint")
