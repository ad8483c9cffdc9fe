"""Collector processors that group and ensemble collected results."""
