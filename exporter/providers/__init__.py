"""The vendors: one module each, found by importing every module of this package.

Each vendor module registers its provider class with `@register`; importing this package
is what makes them all known.  Adding a vendor is adding its module here.
"""

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
