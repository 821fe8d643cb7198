"""Architecture page: ``python model_viz.py [--host 127.0.0.1] [--port 5000] [--graphs results/graphs]``."""

import sys

from viz.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
