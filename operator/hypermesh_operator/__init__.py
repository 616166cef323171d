"""The HyperMesh Kubernetes operator: kopf handlers that converge HyperMesh custom resources
with the same model and drivers as ``hmctl``.

Run it with ``python -m hypermesh_operator`` (or ``kopf run -A -m hypermesh_operator.handlers``).
"""
