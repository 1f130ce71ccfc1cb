"""Helpers for testing managerctl against a real broker."""
