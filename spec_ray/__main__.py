"""Entry point of ``python -m spec_ray``."""

import sys

from spec_ray.cli import main

sys.exit(main())
