"""The test suite's one tolerance helper."""

import numpy as np


def assert_close(actual, expected, rtol, atol=0.0, name="value"):
    """|actual − expected| ≤ atol + rtol·|expected| elementwise (shapes must match exactly)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    assert np.all(err <= bound), (
        f"{name}: max abs err {err.max():.3e}, max rel err "
        f"{np.max(err / np.maximum(np.abs(expected), 1e-300)):.3e} (rtol {rtol}, atol {atol})\n"
        f"actual   {actual}\nexpected {expected}"
    )
