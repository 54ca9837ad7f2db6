"""Helpers shared by the task tests: run a task's CLI in a child process, check one-line errors."""

import os
import subprocess
import sys
import types

from tests.conftest import REPO


def run_cli(task, *args, cwd, timeout=900):
    """Runs `python -m tasks.<task> ARGS` in `cwd`; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", f"tasks.{task}", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def run_in_process(module, capsys, workdir, *args):
    """`python -m tasks.<module> ARGS` run by the same `cli.main` in this process, in `workdir`.

    The CLI's own code path without a TensorFlow start-up per call; returns what `run_cli` does
    (returncode, stdout, stderr). An uncaught exception propagates, failing the test, as a traceback
    from the real CLI would.
    """
    from tasks.core import cli

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        code = cli.main(module, [str(arg) for arg in args]) or 0
    except SystemExit as exit:
        code = exit.code
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def assert_one_line_error(result, *words, code=2):
    """A user mistake: exit `code`, one `error:` line on stderr naming `words`, no traceback."""
    assert result.returncode == code, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
