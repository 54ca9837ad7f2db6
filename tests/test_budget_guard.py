"""The per-test time budget of tests/conftest.py fails an unmarked test that runs over it, and
lets a `slow` one through: shown on a tiny suite run inside this test with a 0.2 s budget."""

import pytest

from tests import conftest

pytest_plugins = ["pytester"]

SUITE = """
import time
import pytest

@pytest.fixture(scope="module")
def expensive():
    time.sleep(0.3)  # a shared training fixture: its setup counts for the first test using it

def test_quick():
    pass

def test_over_budget():
    time.sleep(0.3)

def test_over_budget_in_setup(expensive):
    pass

@pytest.mark.slow
def test_marked_slow():
    time.sleep(0.3)
"""


def test_unmarked_tests_over_the_budget_fail_and_slow_ones_pass(pytester, monkeypatch):
    monkeypatch.setattr(conftest, "BUDGET_SECONDS", 0.2)
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    slow: minutes\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess("-p", "no:xdist", "-p", "no:cacheprovider")
    monkeypatch.undo()  # this test itself is judged by the real budget
    result.assert_outcomes(passed=2, failed=2)
    outcomes = {report.nodeid.split("::")[-1]: report.outcome
                for report in result.reprec.getreports("pytest_runtest_logreport") if report.when == "call"}
    assert outcomes == {"test_quick": "passed", "test_over_budget": "failed",
                        "test_over_budget_in_setup": "failed", "test_marked_slow": "passed"}
    result.stdout.fnmatch_lines(["*over the 0.2 s budget of an unmarked test*"])
