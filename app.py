"""SketchLVM web app: draw in the browser, get the matching photos from your own gallery.

    python app.py --gallery path/to/photos            # one subfolder per category, or a flat folder
    python app.py --help

Hugging Face Spaces run this file. The command line itself lives in ``sketchlvm.webapp.main`` (also
``sketchlvm app`` once the package is installed); this file only starts it.
"""

import sys

from sketchlvm.webapp.main import (  # noqa: F401  (re-exported: the app's public names, as before)
    DEFAULT_TOP_K,
    DRAW_HINT,
    NO_GALLERY_HELP,
    UPLOAD_HINT,
    AppState,
    build_demo,
    build_parser,
    launch,
    launch_kwargs,
    main,
    prepare,
)

if __name__ == "__main__":
    sys.exit(main())
