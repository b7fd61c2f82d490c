"""Spiders of the project. ``site`` is the generic compliant spider."""
