"""Bellhop gateway service."""
