"""The rule catalog: every module in this package that defines ``RULE`` is a rule.

Adding a detection is adding a module; the policy, the engine and the catalog-wide tests
pick it up by its id.
"""

from __future__ import annotations

import importlib
import pkgutil

from pipeline.core.rules.base import Case, Finding, Rule, RuleSettings
from pipeline.core.rules.windows import StatefulRule

AnyRule = Rule | StatefulRule


def _discover() -> dict[str, AnyRule]:
    found: dict[str, AnyRule] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if not isinstance(rule, Rule | StatefulRule):
            continue
        if rule.id in found:
            raise RuntimeError(f"duplicate rule id {rule.id!r} in {module.__name__}")
        found[rule.id] = rule
    return found


REGISTRY: dict[str, AnyRule] = _discover()

__all__ = ["REGISTRY", "AnyRule", "Case", "Finding", "Rule", "RuleSettings", "StatefulRule"]
