"""Entry point of ``python -m spec_ray``."""

import sys

from spec_ray.orchestration.cli import main

sys.exit(main())
