"""Fixtures of the ``controlplane`` tier: a real kube-apiserver + etcd (see cluster.py).

``pytest -m controlplane`` runs the tier alone. Without Go (and without cached binaries or
``KUBEBUILDER_ASSETS``) the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.controlplane.cluster import ControlPlane, acquire_shared, build_before_tests, release_shared


def pytest_collection_finish(session: pytest.Session) -> None:
    build_before_tests(session)


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Session-wide kube-apiserver + etcd with the KubeVirt CRDs installed and served.

    ``controlplane.kubeconfig`` is an admin (system:masters) kubeconfig; ``controlplane.make_user(name,
    groups)`` returns a kubeconfig for a new client-certificate user with no permissions.
    """
    cluster = acquire_shared(tmp_path_factory.mktemp("controlplane"))
    try:
        yield cluster
    finally:
        release_shared()
