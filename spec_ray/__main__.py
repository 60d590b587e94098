"""Entry point of ``python -m spec_ray``: the process boundary.

Only here may MKL's vendor-check preload replace the process (``mkl_dispatch``): ``run``
restarts itself with it, ``mkl-preload -- CMD`` becomes CMD. ``cli.main`` called in-process
(a notebook, the tests) never replaces its caller.
"""

import contextlib
import sys

from spec_ray.orchestration import mkl_dispatch
from spec_ray.orchestration.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        with contextlib.suppress(ValueError):  # a bad switch: main names it and exits 2 before any work
            mkl_dispatch.reexec()  # this process trains: MKL must see the preload from its start
    sys.exit(main(argv, at_entry=True))
