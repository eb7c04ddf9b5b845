"""``python -m ai2text_hf.cli``: the ``ai2text`` command where the console script is not installed."""

import sys

from . import main

sys.exit(main())
