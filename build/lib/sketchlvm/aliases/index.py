"""``python -m sketchlvm.index``: an alias of ``sketchlvm index`` for one release."""

if __name__ == "__main__":
    from sketchlvm.aliases import run_as

    run_as("index")
