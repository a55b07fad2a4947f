"""``python -m aortic_root`` is ``aortic-root``."""

import sys

from .cli import main

sys.exit(main())
