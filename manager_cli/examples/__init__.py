"""Managers shipped with managerctl and registered by entry point."""
