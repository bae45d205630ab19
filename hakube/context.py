"""Glue between pyinfra's inventory and the validated settings (the only reader of host.data)."""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError

from .settings import InventoryError, Settings, inventory_warnings, load_inventory

_loaded: dict[int, dict[str, Settings]] = {}


def settings_for(host, inventory) -> Settings:
    """Settings of ``host``, after validating the data of *every* host in ``inventory`` once.

    Any problem anywhere stops the whole run here, while pyinfra is still planning: no operation
    has been executed on any host yet. Warnings (e.g. a deprecated extra flag) are logged once.
    """
    key = id(inventory)
    if key not in _loaded:
        try:
            _loaded[key] = load_inventory((h.name, h.data.dict(), h.groups) for h in inventory)
        except InventoryError as e:
            raise PyinfraError(str(e)) from None
        for warning in inventory_warnings(_loaded[key]):
            logger.warning(warning)
    return _loaded[key][host.name]
