"""The probe layer's two type aliases, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

PyTree = Any
#: The toolkit's one loss signature: ``loss_fn(params, batch) -> scalar``.
LossFn = Callable[[PyTree, PyTree], jax.Array]
