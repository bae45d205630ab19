"""Glue between pyinfra's inventory and the validated settings (the only reader of host.data)."""

from __future__ import annotations

from pyinfra.api.exceptions import PyinfraError

from .settings import InventoryError, Settings, load_inventory

_loaded: dict[int, dict[str, Settings]] = {}


def settings_for(host, inventory) -> Settings:
    """Settings of ``host``, after validating the data of *every* host in ``inventory`` once.

    Any problem anywhere stops the whole run here, while pyinfra is still planning: no operation
    has been executed on any host yet.
    """
    key = id(inventory)
    if key not in _loaded:
        try:
            _loaded[key] = load_inventory((h.name, h.data.dict(), h.groups) for h in inventory)
        except InventoryError as e:
            raise PyinfraError(str(e)) from None
    return _loaded[key][host.name]
