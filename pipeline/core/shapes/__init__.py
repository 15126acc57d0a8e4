"""Input shapes: every module in this package that defines ``SHAPE`` reads one way a
record can arrive (diagnostic settings, Graph objects, ...). Adding an input form is adding
a module: ``claims`` says whether a decoded record has its shape, ``read`` makes the record.
Shapes are asked in ``order``; the first that claims a record reads it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, NamedTuple

from pipeline.core.records import Record
from pipeline.core.shapes.reading import ParseError


class Shape(NamedTuple):
    order: int
    claims: Callable[[dict[str, Any]], bool]
    read: Callable[[dict[str, Any]], Record]


def _discover() -> list[Shape]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        shape = getattr(module, "SHAPE", None)
        if isinstance(shape, Shape):
            found.append(shape)
    return sorted(found, key=lambda s: s.order)


SHAPES: list[Shape] = _discover()


def normalize(rec: Any) -> Record:
    """One decoded record, of any shape, to a ``SignIn`` or ``RiskEvent``."""
    if not isinstance(rec, dict):
        raise ParseError("not-an-object", "", f"record is {type(rec).__name__}")
    for shape in SHAPES:
        if shape.claims(rec):
            return shape.read(rec)
    raise ParseError("unrecognised-shape", "", "no input shape claims the record")


__all__ = ["SHAPES", "ParseError", "Shape", "normalize"]
