"""``python -m densevision`` is the ``densevision`` command."""

import sys

from densevision.commands import main

sys.exit(main())
