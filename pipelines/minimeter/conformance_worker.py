"""A conformance worker: Great Expectations imported once, suites checked on request.

Started by ``minimeter.quality.start_conformance_worker``; reads pickled check tasks on stdin
and writes each task's pickled results (or None when the check failed) on stdout, until stdin
closes. Not a user-facing command.
"""

from __future__ import annotations

import os
import pickle
import sys


def main() -> int:
    from minimeter import quality

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not reach the answers
    quality._context()  # the import of Great Expectations, while the caller's Beam job runs
    tasks = sys.stdin.buffer
    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:
            return 0
        try:
            answer = quality._check_task(task)
        except Exception:  # noqa: BLE001 - the caller re-checks the task itself and sees the error
            answer = None
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    sys.exit(main())
