"""Method registry: a new method is one file plus one line here."""

from __future__ import annotations

from cl_core.errors import ClsweepError
from cl_core.methods.agem import AGEM
from cl_core.methods.base import Method
from cl_core.methods.bir import BIR
from cl_core.methods.der import DER
from cl_core.methods.derpp import DERpp
from cl_core.methods.dgr import DGR
from cl_core.methods.er import ER
from cl_core.methods.ewc import EWC
from cl_core.methods.finetune import Finetune
from cl_core.methods.fromp import FROMP
from cl_core.methods.gen_classifier import GenerativeClassifier
from cl_core.methods.icarl import ICaRL
from cl_core.methods.joint import Joint
from cl_core.methods.lwf import LwF
from cl_core.methods.separate import SeparateNetworks
from cl_core.methods.si import SI
from cl_core.methods.xdg import XdG


def registry(*classes: type[Method]) -> dict[str, type[Method]]:
    """``{name: class}``; two classes claiming one name would silently shadow each other."""
    names = [c.name for c in classes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ClsweepError(f"method name(s) registered twice: {', '.join(twice)}; rename one")
    return dict(zip(names, classes, strict=True))


METHODS: dict[str, type[Method]] = registry(
    Finetune,
    Joint,
    EWC,
    SI,
    LwF,
    ER,
    AGEM,
    ICaRL,
    DER,
    DERpp,
    XdG,
    SeparateNetworks,
    DGR,
    BIR,
    GenerativeClassifier,
    FROMP,
)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; a clear error for an unknown name."""
    try:
        return METHODS[name]
    except KeyError:
        raise ClsweepError(
            f"unknown method {name!r}; choose one of: {', '.join(METHODS)}"
        ) from None


__all__ = ["METHODS", "Method", "get_method"]
