"""Quiet runs: library logs and warnings go to a log file; the terminal shows progress and errors.

TensorFlow's C++ logs write to file descriptor 2, so that descriptor is pointed at the log file
for the duration of the run; absl, TFX, Beam and TensorFlow log through Python `logging` (its
handlers are swapped for the log file) and Python warnings are routed into `logging`. What is
left for the terminal: one line per component as it starts and finishes, the progress lines of
training (`trainer.protocol.Progress`), the final table, and errors (the caller prints them after
the context has ended, so they reach the terminal in full).
"""
import contextlib
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import time

LOG_FILE = os.path.join("logs", "pipeline.log")
_COMPONENT = re.compile(r"^Component (\S+) is (running|finished)\.$")
_terminal = None  # one stream on a copy of the original stderr, kept for the whole process


def _terminal_stream():
    """sys.stderr if it is not descriptor 2 (e.g. a test's StringIO), else a stream on a copy."""
    global _terminal  # pylint: disable=global-statement
    try:
        on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        on_fd2 = False
    if not on_fd2:
        return sys.stderr
    if _terminal is None:
        _terminal = io.TextIOWrapper(os.fdopen(os.dup(2), "wb", buffering=0),
                                     line_buffering=True, write_through=True)
    return _terminal


class _ProgressHandler(logging.Handler):
    """Prints 'component running / done in S s' lines from TFX's local runner."""

    def __init__(self, stream, header: str = ""):
        super().__init__(logging.INFO)
        self.stream, self.t0, self.started = stream, time.time(), {}
        self.header = header  # printed before the first line, once the pipeline has started

    def emit(self, record):
        match = _COMPONENT.match(record.getMessage())
        if not match:
            return
        if self.header:
            print(self.header, file=self.stream, flush=True)
            self.header = ""
        name, state = match.groups()
        now = time.time()
        if state == "running":
            self.started[name] = now
            text = f"{name} ..."
        else:
            text = f"{name} done ({now - self.started.pop(name, now):.1f} s)"
        print(f"[{now - self.t0:6.1f}s] {text}", file=self.stream, flush=True)


@contextlib.contextmanager
def logs_to_file(output: str, verbose: bool = False, user_errors=(ValueError,)):
    """Within the block, library logs and warnings go to OUT/logs/pipeline.log (`verbose`:
    everything stays on the terminal, plus the progress lines). Until the block ends they are
    written to a temporary file, so that a run refused before any work (an exception of type
    `user_errors`, printed by the caller in one line) leaves nothing behind."""
    root, absl_logger = logging.getLogger(), logging.getLogger("absl")
    saved = (list(root.handlers), root.level, sys.stderr, absl_logger.level, _absl_verbosity())
    # TFX's "Component X is running/finished" lines are absl INFO records. absl's verbosity flag
    # is raised too: a library that turns absl's handler on mid-run (Transform does) resets the
    # levels from that flag, which would silence every progress line after it.
    _absl_verbosity(logging.INFO)
    absl_logger.setLevel(logging.INFO)
    if verbose:
        progress = _ProgressHandler(sys.stderr)
        root.addHandler(progress)
        try:
            yield None
        finally:
            root.removeHandler(progress)
            _absl_verbosity(saved[4])
            absl_logger.setLevel(saved[3])
        return
    path = os.path.join(os.path.abspath(output), LOG_FILE)
    log = tempfile.NamedTemporaryFile(  # pylint: disable=consider-using-with
        "w", prefix="coldstart-", suffix=".log", delete=False, buffering=1, encoding="utf-8")
    log.write(f"==== coldstart run, {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")
    terminal = _terminal_stream()
    sys.stderr.flush()
    saved_fd2 = os.dup(2)
    os.dup2(log.fileno(), 2)
    sys.stderr = terminal
    file_handler = logging.StreamHandler(log)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [file_handler, _ProgressHandler(
        terminal, f"coldstart: library logs and warnings go to {path} at the end of the run, "
                  f"to {log.name} until then (--verbose shows them)")]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    absl_handler = _absl_handler()
    absl_stream = absl_handler.python_handler.stream if absl_handler else None
    if absl_handler:  # it writes to sys.stderr before flags are parsed: keep it off the root
        absl_handler.python_handler.stream = log
    refused = False
    try:
        yield path
    except user_errors:
        refused = True
        raise
    finally:
        logging.captureWarnings(False)
        if absl_handler:
            absl_handler.python_handler.stream = absl_stream
        root.handlers, _, sys.stderr, _, _ = saved
        _absl_verbosity(saved[4])
        root.setLevel(saved[1])
        absl_logger.setLevel(saved[3])
        sys.stderr.flush()
        os.dup2(saved_fd2, 2)
        os.close(saved_fd2)
        log.close()
        if refused:
            os.remove(log.name)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a", encoding="utf-8") as out, open(log.name, encoding="utf-8") as tmp:
                shutil.copyfileobj(tmp, out)
            os.remove(log.name)
            if sys.exc_info()[0] is not None:
                print(f"coldstart: the full log of this run is in {path}", file=sys.stderr,
                      flush=True)


def _absl_verbosity(level=None):
    """absl's verbosity flag as a Python logging level; with `level`, sets it first."""
    try:
        from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    except ImportError:
        return level
    if level is not None:
        absl_logging.set_verbosity(absl_logging.converter.standard_to_absl(level))
    return absl_logging.converter.absl_to_standard(absl_logging.get_verbosity())


def _absl_handler():
    try:
        from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    return absl_logging.get_absl_handler()
