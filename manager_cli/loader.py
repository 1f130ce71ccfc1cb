"""Find manager classes: by entry point (group ``managerctl.managers``) or as ``module:Class``."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from . import names
from .errors import ManagerLoadError, UnknownNameError

ENTRY_POINT_GROUP = names.MANAGER_ENTRY_POINT_GROUP


@dataclass(frozen=True)
class ManagerEntry:
    """A manager known by name, not yet imported."""

    name: str
    target: str  # "module:Class"
    distribution: str | None


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def list_managers() -> list[ManagerEntry]:
    """Every manager registered by entry point, sorted by name (nothing is imported)."""
    entries = []
    for ep in _entry_points():
        dist = getattr(ep, "dist", None)
        entries.append(ManagerEntry(ep.name, ep.value, dist.name if dist else None))
    return entries


def manager_names() -> list[str]:
    return [entry.name for entry in list_managers()]


def _import_target(target: str, shown_name: str) -> type:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ManagerLoadError(
            f"manager {shown_name!r}: cannot import module {module_name}: "
            f"{type(exc).__name__}: {exc}",
            hint="check that its package is installed and imports cleanly",
        ) from exc
    obj: object = module
    for part in attr.split(".") if attr else []:
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ManagerLoadError(
                f"manager {shown_name!r}: {module_name} has no attribute {attr}",
                hint="check the entry point or the module:Class name",
            ) from None
    return _check_manager_class(obj, shown_name)


def _check_manager_class(obj: object, shown_name: str) -> type:
    from .manager import Manager

    if not (isinstance(obj, type) and issubclass(obj, Manager)):
        raise ManagerLoadError(
            f"manager {shown_name!r} is {obj!r}, not a subclass of manager_cli.manager.Manager",
            hint="register a Manager subclass",
        )
    return obj


def resolve_name(name: str) -> tuple[str, str]:
    """(entry-point name or the given name, "module:Class") for a NAME or module:Class."""
    if ":" in name:
        return name.rsplit(":", 1)[-1].lower(), name
    for entry in list_managers():
        if entry.name == name:
            return entry.name, entry.target
    known = ", ".join(manager_names()) or "none installed"
    raise UnknownNameError(
        f"unknown manager {name!r}",
        hint=f"known managers: {known} (or give module:Class)",
    )


def load_manager_class(name: str) -> type:
    """The manager class for an entry-point name or a ``module:Class`` path."""
    shown, target = resolve_name(name)
    if ":" in name:
        shown = name
    return _import_target(target, shown)


def topic_for(name: str, cls: type) -> str:
    """The RPC topic a manager's service consumes: its TOPIC, or its entry-point name."""
    topic = getattr(cls, "TOPIC", None)
    if topic:
        return str(topic)
    if ":" in name:
        return cls.__name__.lower()
    return name
