"""Bellhop orchestrator service."""
