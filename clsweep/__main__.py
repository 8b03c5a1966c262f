"""``python -m clsweep run|sweep|report ...``, the same as the ``clsweep`` command."""

import sys

from clsweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
