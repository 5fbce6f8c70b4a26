"""``python -m sketchlvm.partial``: an alias of ``sketchlvm partial`` for one release."""

if __name__ == "__main__":
    from sketchlvm.aliases import run_as

    run_as("partial")
