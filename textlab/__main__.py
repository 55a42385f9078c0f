"""`python -m textlab` (also what `torchrun -m textlab` runs) and the `textlab` command.

Kept tiny: a Ctrl-C pressed while the command line is still being imported ends in one line and
exit code 130, not in a traceback.
"""

from __future__ import annotations

import sys


def entry() -> None:
    try:
        from textlab.cli import entry as run
    except KeyboardInterrupt:
        sys.stderr.write("error: aborted\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    entry()
