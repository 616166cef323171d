"""Nexus: a small language for HyperMesh networks and mesh applications (issue 8)."""
