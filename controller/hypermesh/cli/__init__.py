"""The ``hmctl`` command line."""
