"""Import modules as if only some distributions were installed: every other installed
distribution's top-level modules raise ModuleNotFoundError, as they would in a venv without it.

    python -m tests.component.import_probe ALLOWED_JSON PACKAGE [PACKAGE ...]

ALLOWED_JSON: the canonical names of the distributions to keep. Each PACKAGE and every module
under it is imported (`__main__` modules, which run on import, are left out; so are
subpackages named with a `-` prefix: `kubetask -kubetask.api` skips kubetask.api). Prints a JSON
object {module: "ExceptionType: message"} of the imports that failed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import pkgutil
import re
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType


def canonical(name: str) -> str:
    """A distribution name as packaging normalises it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class NotInstalled(importlib.abc.MetaPathFinder):
    """Refuses the top-level modules of every distribution outside `allowed`."""

    def __init__(self, allowed: set[str]) -> None:
        self.blocked = {
            module
            for module, dists in importlib.metadata.packages_distributions().items()
            if not any(canonical(dist) in allowed for dist in dists)
        }

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in self.blocked:
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None


def module_names(package: str, skipped: set[str]) -> list[str]:
    """`package` and every module under it, without importing the skipped subpackages."""
    found = [package]
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        name = f"{package}.{info.name}"
        if name in skipped or info.name == "__main__":
            continue
        if info.ispkg:
            found += module_names(name, skipped)
        else:
            found.append(name)
    return found


def probe(allowed: set[str], packages: Sequence[str]) -> dict[str, str]:
    """The failed imports, module -> "Type: message"."""
    sys.meta_path.insert(0, NotInstalled(allowed | {"kubetask"}))
    skipped = {p[1:] for p in packages if p.startswith("-")}
    failed: dict[str, str] = {}
    for package in (p for p in packages if not p.startswith("-")):
        try:
            names = module_names(package, skipped)
        except Exception as exc:
            failed[package] = traceback.format_exception_only(exc)[-1].strip()
            continue
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:
                failed[name] = traceback.format_exception_only(exc)[-1].strip()
    return failed


if __name__ == "__main__":
    print(json.dumps(probe(set(json.loads(sys.argv[1])), sys.argv[2:])))
