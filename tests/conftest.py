"""Shared fixtures: where the real datasets live, and a quiet, deterministic TF."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
# One setting says where ../shared/data is; missing data skips locally and fails in CI.
SHARED_DATA = pathlib.Path(os.environ.get("APPLIED_DL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data():
    """Returns the folder of real datasets, or skips (locally) / fails (CI) when it is missing."""
    if not SHARED_DATA.is_dir():
        message = f"real datasets not found at {SHARED_DATA} (set APPLIED_DL_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA
