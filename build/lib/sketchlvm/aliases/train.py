"""``python -m sketchlvm.train``: an alias of ``sketchlvm train`` for one release."""

if __name__ == "__main__":
    from sketchlvm.aliases import run_as

    run_as("train")
