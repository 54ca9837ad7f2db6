"""Shared fixtures: where the real datasets live, a quiet TF, and the per-test time budget."""

import os
import pathlib
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
# One setting says where ../shared/data is; missing data skips locally and fails in CI.
SHARED_DATA = pathlib.Path(os.environ.get("APPLIED_DL_DATA", REPO.parent / "shared" / "data"))
# A test (its setup included: a shared training fixture counts for the first test that uses it)
# that takes longer than this carries @pytest.mark.slow with a one-line reason, or the run fails.
# 60 s on a host whose cores multiply float32 matrices at REFERENCE_GFLOPS or faster; hosts differ
# up to 3x, so a slower host gets a proportionally longer budget.
REFERENCE_GFLOPS = 100.0


def matmul_gflops(size=1024, repeats=7):
    """Best-of-`repeats` rate of one size x size float32 NumPy matmul (2 n^3 FLOPs), in GFLOP/s."""
    matrix = np.random.default_rng(0).random((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matrix @ matrix
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


if "TEST_BUDGET_SECONDS" in os.environ:
    BUDGET_SECONDS = float(os.environ["TEST_BUDGET_SECONDS"])
else:
    BUDGET_SECONDS = 60.0 * max(1.0, REFERENCE_GFLOPS / matmul_gflops())


@pytest.fixture(scope="session")
def shared_data():
    """Returns the folder of real datasets, or skips (locally) / fails (CI) when it is missing."""
    if not SHARED_DATA.is_dir():
        message = f"real datasets not found at {SHARED_DATA} (set APPLIED_DL_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    """A test that starts a fresh interpreter pays a TensorFlow import (5-10 s on two cores): it runs
    in the full suite, not in the fast lane (`-m "not slow"`), which stays in process."""
    for item in items:
        if item.get_closest_marker("subprocess") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


def pytest_report_header(config):
    return f"per-test budget of unmarked tests: {BUDGET_SECONDS:.0f} s"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Fails an unmarked test whose setup and call together exceed BUDGET_SECONDS."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "setup":
        item.budget_setup_seconds = report.duration
        return
    if report.when != "call" or not report.passed or item.get_closest_marker("slow"):
        return
    seconds = getattr(item, "budget_setup_seconds", 0.0) + report.duration
    if seconds > BUDGET_SECONDS:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} took {seconds:.1f} s (setup included), over the {BUDGET_SECONDS:g} s budget of "
            "an unmarked test: make it cheaper, or mark it @pytest.mark.slow with a one-line reason."
        )
