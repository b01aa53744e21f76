"""``python -m cryptota_core.cli``: the ``cryptota`` command without the console script."""

import sys

from cryptota_core.cli import main

sys.exit(main())
