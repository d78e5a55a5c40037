"""Adapters that drive metalr's schedulers from other training frameworks."""
