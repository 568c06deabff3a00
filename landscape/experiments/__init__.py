"""Paper experiments beyond Figure 4; importing this package registers them with
:data:`landscape.reproduce.EXPERIMENTS`."""

import importlib

for _name in ("activations", "landscapes", "theorems"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:  # a module not written yet must not break the others
        if e.name != f"{__name__}.{_name}":
            raise
