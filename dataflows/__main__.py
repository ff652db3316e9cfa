"""``python -m dataflows`` is the ``streamrec`` command (one ``UsageError`` class either way)."""

import sys

from dataflows.cli import main

sys.exit(main())
