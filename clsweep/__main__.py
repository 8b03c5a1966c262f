"""``python -m clsweep run|sweep|report ...``, the same as the ``clsweep`` command."""

import sys

from clsweep.cli import main

sys.exit(main())
