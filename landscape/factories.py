"""User code named by a string: ``"package.module:function"`` or ``"path/to/file.py:function"``.

Run folders record such a name (and its keyword arguments) so that ``landscape analyze`` and
``landscape compare`` can rebuild a model that is not one of the toolkit's own: a
``TrainConfig(model="mypkg.nets:resnet")`` names an NNX model factory, and
``fit(..., setup="examples/transformer_lm.py:setup")`` a whole run's setup. A light module: it
imports nothing but the standard library.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from landscape.choices import ConfigError

__all__ = ["is_factory_name", "load_callable", "portable_name"]


def is_factory_name(name: str) -> bool:
    """True for a user model given as ``"package.module:function"`` or ``"path/file.py:function"``."""
    return isinstance(name, str) and ":" in name


def _module(name: str, what: str) -> Any:
    if name.endswith(".py"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"{what}: no file {path}")
        module_name = f"_landscape_user_{abs(hash(str(path.resolve())))}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[module_name]
            raise ConfigError(f"{what}: importing {path} failed: {type(e).__name__}: {e}") from None
        return module
    try:
        return importlib.import_module(name)
    except Exception as e:  # ImportError, or the module's own error
        raise ConfigError(f"{what}: cannot import {name!r} ({type(e).__name__}: {e})") from None


def load_callable(spec: str, what: str = "factory") -> Callable[..., Any]:
    """The function a ``"module:function"`` / ``"file.py:function"`` name points at.

    Raises :class:`~landscape.choices.ConfigError` naming ``what`` when the module cannot be
    imported or has no such callable.

    Example:
        >>> load_callable("math:sqrt")(9.0)
        3.0
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"{what}: expected 'package.module:function' or 'file.py:function', "
                          f"got {spec!r}")
    module_name, attr = spec.split(":")
    fn = getattr(_module(module_name, what), attr, None)
    if not callable(fn):
        raise ConfigError(f"{what}: {module_name} has no function {attr!r}")
    return fn


def portable_name(fn: Callable[..., Any]) -> str:
    """``"module:function"`` for an importable top-level function; ``"file.py:function"`` for one
    defined in a script run as ``__main__`` (absolute path). ConfigError for anything else."""
    name, module = getattr(fn, "__qualname__", ""), getattr(fn, "__module__", None)
    if not name or "<" in name or "." in name or module is None:
        raise ConfigError(f"setup must be a top-level function (or a 'module:function' name); "
                          f"got {fn!r}")
    if module == "__main__" or module.startswith("_landscape_user_"):
        path = getattr(sys.modules.get(module), "__file__", None)
        if path is None:
            raise ConfigError("setup defined interactively cannot be rebuilt later; put it in a file")
        return f"{Path(path).resolve()}:{name}"
    return f"{module}:{name}"
