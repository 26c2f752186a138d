"""The conformance worker: Great Expectations imported once, suites checked on request.

``start`` launches ``python -m minimeter.conformance.worker`` before the Beam job, so that the
import overlaps the job; the worker reads pickled check tasks on stdin and writes each task's
pickled results (or None when the check failed) on stdout, until stdin closes. Not a
user-facing command.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minimeter.conformance.run import CheckTask
    from minimeter.conformance.suites import ExpectationResult


class Worker:
    """One worker process, spoken to in pickles over pipes.

    A process of its own rather than ``multiprocessing``: spawn would re-run the caller's main
    script in the child, and fork would copy Beam's gRPC threads.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "minimeter.conformance.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.alive = True
        self.answered = 0
        self.lock = threading.Lock()

    def check(self, task: CheckTask) -> list[ExpectationResult] | None:
        """The task's results, or None when the worker failed (the caller checks it itself)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if not self.alive:
            return None
        try:
            with self.lock:  # one question and its answer at a time on the pipes
                pickle.dump(task, self.process.stdin)
                self.process.stdin.flush()
                answer = pickle.load(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            self.alive = False  # gone (killed, out of memory): no more tasks for it
            return None
        if not isinstance(answer, list):
            return None
        self.answered += 1
        return answer

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_WORKER: Worker | None = None


def current() -> Worker | None:
    """The worker ``start`` started in this process, if any."""
    return _WORKER


def start() -> None:
    """Start a process that imports Great Expectations now, for ``run_conformance`` to use later.

    The import costs about 2.6 CPU-s and 240 MiB. ``minimeter run`` calls this before its Beam
    job, so that the import overlaps the job (on the core the job leaves free) instead of
    following it. The worker serves every later run of this process. A task it fails is checked
    in the caller instead.
    """
    global _WORKER
    if _WORKER is not None:
        return
    try:
        _WORKER = Worker()
    except OSError:
        return
    atexit.register(stop)


def stop() -> None:
    global _WORKER
    if _WORKER is not None:
        _WORKER.stop()
        _WORKER = None


def main() -> int:
    from minimeter.conformance.run import _worker_context, check_task

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not reach the answers
    _worker_context()  # the import of Great Expectations, while the caller's Beam job runs
    tasks = sys.stdin.buffer
    while True:
        try:
            task = pickle.load(tasks)
        except EOFError:
            return 0
        try:
            answer = check_task(task)
        except Exception:  # noqa: BLE001 - the caller re-checks the task itself and sees the error
            answer = None
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    sys.exit(main())
