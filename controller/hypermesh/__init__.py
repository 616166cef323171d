"""HyperMesh: a peer-to-peer network over QUIC/HTTP/3, run as declarative infrastructure."""

__version__ = "0.1.0"
API_VERSION = "hypermesh.online/v1alpha1"

__all__ = ["API_VERSION", "__version__"]
