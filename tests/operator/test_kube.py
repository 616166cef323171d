"""The operator's Kubernetes client counts its calls by resource (what bench/operator.py reads)."""

from __future__ import annotations

import pytest

from hypermesh_operator.kube import _plural


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ("/api/v1/namespaces/demo/pods/hm-a-0", "pods"),
        ("/api/v1/namespaces/demo/secrets/hm-a-identity", "secrets"),
        ("/apis/apps/v1/namespaces/demo/statefulsets/hm-a", "statefulsets"),
        ("/apis/hypermesh.online/v1alpha1/namespaces/demo/records/www/status", "records"),
        ("/api/v1/namespaces/demo", "namespaces"),
        ("/api/v1/nodes/worker-1", "nodes"),  # cluster-scoped: not counted as "api"
        ("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", "customresourcedefinitions"),
    ],
)
def test_a_call_is_counted_by_the_resource_it_is_about(path: str, resource: str) -> None:
    assert _plural(path) == resource
