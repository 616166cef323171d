"""The network lab: namespaces as hosts, an internet namespace between them (see lab.py)."""
