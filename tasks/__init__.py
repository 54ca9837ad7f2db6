"""Applied deep-learning tasks: one module each, every one with the same verbs.

    python -m tasks                                  # lists the tasks
    python -m tasks.classification train             # trains on the built-in demo data

Importing the package makes TensorFlow quiet before any task imports it: a run prints its own
lines (progress, metrics, paths). `--verbose 2` on the command line, or an explicit
`TF_CPP_MIN_LOG_LEVEL`, shows TensorFlow's log lines again.
"""

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile

# Task modules in the order the README's table lists them (one line each from their docstrings).
TASKS = ["classification", "detection", "segmentation", "image_generation", "sentiment", "summarization", "translation", "text_generation", "anomaly_detection", "graph_property"]


def _verbose_from_argv(argv):
    """The value of `--verbose N` / `--verbose=N` on the command line, or None."""
    for index, argument in enumerate(argv):
        value = None
        if argument == "--verbose" and index + 1 < len(argv):
            value = argv[index + 1]
        elif argument.startswith("--verbose="):
            value = argument.split("=", 1)[1]
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


_LOUD = (_verbose_from_argv(sys.argv[1:]) or 0) >= 2

# TensorFlow's C++ log level: 3 hides the start-up lines that come after absl is initialized
# (`failed call to cuInit` on every machine without a GPU is an ERROR line). setdefault: a
# user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _LOUD else "3")
os.environ.setdefault("GRPC_VERBOSITY", "INFO" if _LOUD else "ERROR")  # multi-worker's gRPC channels
if not _LOUD:
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)

# Lines absl writes to stderr while TensorFlow's libraries load, before TF_CPP_MIN_LOG_LEVEL is
# read: `I0000 00:00:1796678745.96 7192 port.cc:153] oneDNN custom operations are on ...`.
_CPP_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def _keeps(line, level):
    """Whether a stderr line written while TensorFlow loads passes the C++ log level."""
    if line.startswith(_ABSL_BANNER) or line.startswith("To enable the following instructions"):
        return level < 1  # the banner, and the second line of cpu_feature_guard's INFO
    match = _CPP_LINE.match(line)
    return match is None or _SEVERITY[match.group(1)] >= level


@contextlib.contextmanager
def _filtered_stderr(level):
    """Runs the body with file descriptor 2 captured, then replays the lines that pass `level`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            sys.stderr.write("".join(line for line in text.splitlines(True) if _keeps(line, level)))
            sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Loads `tensorflow` (once, whoever imports it first) with its start-up lines filtered."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_quietly(module):
            with _filtered_stderr(_log_level()):
                exec_module(module)

        spec.loader.exec_module = exec_quietly
        return spec


def _log_level():
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


if "tensorflow" not in sys.modules and _log_level() > 0:
    sys.meta_path.insert(0, _QuietTensorFlowImport())
