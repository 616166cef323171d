"""Harnesses more than one concern of the tests (and the benchmarks) start things with: node
processes, network namespaces, an in-process DNS endpoint, kdig, provenance paths, ZONEMD checks.

A concern's own fixtures stay in its ``conftest.py``; what another concern or ``bench/`` needs
lives here, so that no test imports another concern's conftest.
"""
