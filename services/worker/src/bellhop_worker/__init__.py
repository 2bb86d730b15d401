"""Bellhop worker service."""
