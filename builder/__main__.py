"""`python -m builder`: one command of builder/cli.py, and how the process ends when its output cannot be written."""

import errno
import os
import signal
import sys

from builder import files
from builder.cli import main

_OUTPUT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)  # what writing stdout can meet


def run() -> int:
    files.exit_on_sigterm()  # SIGTERM ends as Ctrl-C does: every `finally` runs, no temporary file stays
    try:
        status = main()
        sys.stdout.flush()  # a reader that has gone shows here, inside the try, not in the flush at exit
        return status
    except BrokenPipeError:
        # `make -s list | head -1`: the reader took what it wanted and closed the pipe. As Python's documentation
        # says to (the signal module's note on SIGPIPE): stdout goes to /dev/null, so that the flush at exit cannot
        # fail again, and the status is a process's that SIGPIPE ended, as `yes | head -1` leaves it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as e:
        if e.filename is not None or e.errno not in _OUTPUT_ERRORS:  # not standard output's: not for this handler
            raise
        # stdout on a full disk or a broken device (`> /dev/full`): say so once, on stderr, and leave no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"torchyard: could not write the output: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1


sys.exit(run())
