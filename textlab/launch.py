"""`python -m textlab.launch ARGS`: torchrun (`torch.distributed.run ARGS`) without its noise.

`textlab train ... --nproc N` runs this. The processes inherit the terminal (live progress bars);
only rank 0 prints an error line (every rank usually hits the same one). When a process fails,
torchrun itself would log the failure and print a traceback of its own; here it stays quiet and
exits with the failing process's exit code, adding one line only when rank 0 did not fail (its own
error line is then missing). Which rank torchrun records first when all fail at once is a race, so
rank 0's failure is looked up, not taken from "the first".
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if not os.environ.get("TEXTLAB_DEBUG"):
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if 0 in exc.failures and exc.failures[0].exitcode > 0:  # rank 0 exited with its own error line too
            rank, failure = 0, exc.failures[0]  # (not killed by torchrun after another rank failed)
        code = failure.exitcode if failure.exitcode > 0 else 128 + (-failure.exitcode or 1)
        if rank != 0:
            sys.stderr.write(f"error: process {rank} failed (exit code {failure.exitcode}); "
                             "set TEXTLAB_DEBUG=1 to see every process's output\n")
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - torchrun's SignalException (SIGTERM from SLURM): no traceback
        signum = getattr(exc, "sigval", None)
        if signum is None:
            raise
        return 128 + int(signum)  # the workers got the signal too and saved last.pt
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
