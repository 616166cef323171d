"""The HyperMesh Kubernetes operator: kopf handlers that converge HyperMesh custom resources
with the same model, planner and drivers as ``hmctl``. Run with ``kopf run -m hypermesh_operator``."""
