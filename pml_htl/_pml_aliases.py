"""pml_htl's modules stand in for pytorch_metric_learning's.

A PML script keeps working when its import lines say ``pml_htl`` instead of
``pytorch_metric_learning``: ``from pml_htl import losses, distances``,
``from pml_htl.utils import common_functions as c_f``,
``from pml_htl.losses.base_metric_loss_function import BaseMetricLossFunction``.

The stand-ins are PML's own module objects registered under pml_htl's names,
not copies: classes stay the same classes (``isinstance`` holds either way)
and module globals such as ``c_f.COLLECT_STATS`` are shared. The packages that
pml_htl extends (losses, miners, samplers, datasets, utils) hold PML's names
plus pml_htl's; their submodules that pml_htl defines itself win.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys


def register_submodules(package_name: str, pml_package_name: str) -> None:
    """Import every submodule of a PML package and register it under
    ``package_name`` too, unless that package has a submodule of that name."""
    pml = importlib.import_module(pml_package_name)
    package = sys.modules[package_name]
    own = (
        {info.name for info in pkgutil.iter_modules(package.__path__)}
        if package is not pml and hasattr(package, "__path__")
        else set()
    )
    for info in pkgutil.iter_modules(pml.__path__):
        if info.name in own:
            continue
        module = importlib.import_module(f"{pml_package_name}.{info.name}")
        sys.modules.setdefault(f"{package_name}.{info.name}", module)
        if not hasattr(package, info.name):
            setattr(package, info.name, module)


def stand_in_for(module_name: str, pml_package_name: str) -> None:
    """Make ``module_name`` (a module being imported) be PML's package itself."""
    pml = importlib.import_module(pml_package_name)
    sys.modules[module_name] = pml  # the import system returns this object
    register_submodules(module_name, pml_package_name)
