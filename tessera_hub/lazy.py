"""Package attributes that import their module on first use (PEP 562), so importing a package for one light
name (the `tessera` command's list of subcommands, a config class) does not load torch and transformers."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_attributes(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` for `package`: name → the attribute of the same name in `package`.<module>."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
