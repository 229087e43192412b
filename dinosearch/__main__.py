"""``python -m dinosearch``: the same as the ``dinosearch`` command."""

import sys

from dinosearch.cli import main

sys.exit(main())
