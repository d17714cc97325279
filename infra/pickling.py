"""Dynamic providers are pickled into the Pulumi state and unpickled in another process.

dill pickles a class by reference when its module is importable, and the dynamic-provider process
cannot import modules of `infra/` (it does not run from there): `by_value` marks a provider class and
its functions as `__main__`'s, which dill always pickles by value (pulumi/pulumi#7453). What the
methods use from elsewhere (`inferstack.*`, `pulumi.*`, the standard library) stays by reference.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound=type)


def by_value(cls: T) -> T:
    cls.__module__ = "__main__"
    for member in vars(cls).values():
        function = getattr(member, "__func__", member)
        if hasattr(function, "__code__"):
            function.__module__ = "__main__"
    return cls
