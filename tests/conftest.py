"""Shared fixtures: where the real datasets live, a quiet TF, and the per-test time budget."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
# One setting says where ../shared/data is; missing data skips locally and fails in CI.
SHARED_DATA = pathlib.Path(os.environ.get("APPLIED_DL_DATA", REPO.parent / "shared" / "data"))
# A test (its setup included: a shared training fixture counts for the first test that uses it)
# that takes longer than this carries @pytest.mark.slow with a one-line reason, or the run fails.
BUDGET_SECONDS = float(os.environ.get("TEST_BUDGET_SECONDS", "60"))


@pytest.fixture(scope="session")
def shared_data():
    """Returns the folder of real datasets, or skips (locally) / fails (CI) when it is missing."""
    if not SHARED_DATA.is_dir():
        message = f"real datasets not found at {SHARED_DATA} (set APPLIED_DL_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


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
