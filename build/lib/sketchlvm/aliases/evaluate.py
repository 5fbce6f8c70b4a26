"""``python -m sketchlvm.evaluate``: an alias of ``sketchlvm evaluate`` for one release."""

if __name__ == "__main__":
    from sketchlvm.aliases import run_as

    run_as("evaluate")
