"""Fixtures for tests that run against the Docker lab (see tests/lab/).

Each test module gets its own lab prefix (derived from the module name) so modules do not share containers and
can run in parallel with pytest-xdist. The node image and the .debs are built once.

Building a product cluster (containers and site.yml from bare nodes) is the longest part of most modules, so the
modules that need the same 2-node cluster of a product share one: ``cluster_pool.get(product)`` builds it on first
use in the worker and resets it in place for each later module (``Cluster.reset``). tests/conftest.py makes them
one unit of work per product, so one worker runs them one after the other.
"""

import os
import shutil

import pytest

from tests.lab import image
from tests.lab.cluster import PRODUCTS, Cluster
from tests.lab.lab import Lab, build_debs


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def node_image():
    if shutil.which("docker") is None:
        pytest.fail("Docker is needed for the lab tests: run scripts/setup first")
    return image.build()


@pytest.fixture(scope="session")
def debs():
    return build_debs()


def module_lab_prefix(request):
    """``<$POSITOPS_LAB>-<module name>``: labs of different modules (and sessions) never share containers."""
    base = os.environ.get("POSITOPS_LAB", "it")
    module = request.module.__name__.rsplit(".", 1)[-1].replace("test_", "").replace("_", "-")
    return "%s-%s" % (base, module)


@pytest.fixture(scope="module")
def lab(request, node_image):
    """A lab private to one test module, destroyed at its end (kept with POSITOPS_KEEP_LAB=1)."""
    lab = Lab(module_lab_prefix(request))
    lab.destroy()
    yield lab
    if not os.environ.get("POSITOPS_KEEP_LAB"):
        lab.destroy()


class ClusterPool:
    """2-node product clusters behind HAProxy shared by the modules of one worker: ``get(product)`` builds the
    product's cluster the first time and resets it in place after that."""

    def __init__(self, base):
        self.base = base
        self.clusters = {}
        self.build_failures = {}

    def get(self, product):
        cluster = self.clusters.get(product)
        if cluster is not None:
            cluster.reset()
            return cluster
        if product in self.build_failures:
            # Each later module would otherwise build again and wait out the same failure, minutes each.
            pytest.fail("the pooled %s cluster failed to build earlier in this worker: %s" % (
                product, self.build_failures[product]))
        lab = Lab("%s-pool-%s" % (self.base, PRODUCTS[product]["node"]))
        lab.destroy()
        cluster = Cluster(lab, product, nodes=2)
        try:
            cluster.up()
        except Exception as error:
            self.build_failures[product] = str(error)[-2000:]
            raise
        self.clusters[product] = cluster
        return cluster

    def close(self):
        if os.environ.get("POSITOPS_KEEP_LAB"):
            return
        for cluster in self.clusters.values():
            cluster.destroy()


@pytest.fixture(scope="session")
def cluster_pool(node_image, debs):
    # The worker's name keeps two workers' pools apart, should one product's modules ever run on both.
    base = "-".join(filter(None, [os.environ.get("POSITOPS_LAB", "it"), os.environ.get("PYTEST_XDIST_WORKER")]))
    pool = ClusterPool(base)
    yield pool
    pool.close()
