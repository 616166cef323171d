"""``python -m hypermesh_operator``: run the operator (every namespace; one replica)."""

import kopf

import hypermesh_operator.handlers  # noqa: F401 (registers the handlers)

kopf.run(clusterwide=True, standalone=True)
