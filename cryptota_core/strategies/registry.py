"""The strategy registry: how the CLI, the pipelines and the optimiser find a strategy by name.

Built-in strategies register when :mod:`cryptota_core.strategies` is imported. A user strategy is
one module that decorates its spec with :func:`register`; it becomes visible either by being
imported (a notebook, a test) or, for the CLI and Dagster, through an entry point in the
``cryptota.strategies`` group of an installed package (loaded on the first look-up)::

    [project.entry-points."cryptota.strategies"]
    sma_cross = "my_package.sma_cross"
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import re
from typing import TypeVar

from cryptota_core.errors import InvalidInputError
from cryptota_core.strategies.base import CLASS_PATH, Strategy, check_abbreviations

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "cryptota.strategies"
"""Entry-point group scanned for third-party strategies (a module or a :class:`Strategy`)."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_REGISTRY: dict[str, Strategy] = {}
_entry_points_loaded = False

S = TypeVar("S", bound=type[Strategy])


def register(spec: S) -> S:
    """Class decorator adding a :class:`Strategy` subclass to the registry under ``spec.name``.

    Re-registering the same class (same module and qualified name, e.g. after a module reload)
    replaces the old entry; a *different* class claiming a taken name is an error, because two
    strategies answering to one name would make results untraceable."""
    if not (isinstance(spec, type) and issubclass(spec, Strategy)):
        raise TypeError(f"@register expects a Strategy subclass, got {spec!r}")
    name = getattr(spec, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{spec.__qualname__}.name must be lower-case letters, digits and '_', got {name!r}"
        )
    if not hasattr(spec, "params_model") or not hasattr(spec, "bt_class"):
        raise ValueError(f"strategy {name} must set params_model and bt_class")
    if isinstance(spec.bt_class, str) and not CLASS_PATH.fullmatch(spec.bt_class):
        raise ValueError(
            f"strategy {name}: bt_class {spec.bt_class!r} must be a class or name one as "
            "'package.module:Class'"
        )
    check_abbreviations(spec)
    old = _REGISTRY.get(name)
    if old is not None and _identity(type(old)) != _identity(spec):
        raise ValueError(
            f"strategy name {name!r} is taken by {_identity(type(old))}; rename {_identity(spec)}"
        )
    _REGISTRY[name] = spec()
    return spec


def unregister(name: str) -> None:
    """Remove a strategy (for tests and notebooks that register throw-away strategies)."""
    _REGISTRY.pop(name, None)


def get_strategy(name: str) -> Strategy:
    """The registered spec called ``name``; an unknown name raises :class:`InvalidInputError`
    listing the known names and the closest one."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    _load_entry_points()
    if name in _REGISTRY:
        return _REGISTRY[name]
    names = strategy_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InvalidInputError(f"unknown strategy {name!r}: use one of {', '.join(names)}{hint}")


def strategy_names() -> list[str]:
    """Every registered strategy name, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def _identity(spec: type) -> str:
    return f"{spec.__module__}.{spec.__qualname__}"


def _load_entry_points() -> None:
    """Import the ``cryptota.strategies`` entry points once. A broken plug-in is logged and
    skipped: it must not take the built-in strategies down with it."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a third-party import can fail in any way
            log.warning("could not load strategy plug-in %s (%s): %s", ep.name, ep.value, e)
            continue
        is_spec = isinstance(obj, type) and issubclass(obj, Strategy)
        if is_spec and getattr(obj, "name", None) not in _REGISTRY:
            register(obj)
