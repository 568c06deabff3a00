"""Shared fixtures."""

import jax
import pytest


@pytest.fixture(scope="module")
def x64():
    """float64 for one module (``pytestmark = pytest.mark.usefixtures("x64")``); restored after."""
    with jax.enable_x64(True):
        yield
