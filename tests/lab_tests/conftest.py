"""Fixtures for tests that run against the Docker lab (see tests/lab/).

Each test module gets its own lab prefix (derived from the module name) so modules do not share containers and
can run in parallel with pytest-xdist's ``--dist loadfile``. The node image and the .debs are built once.
"""

import os
import shutil

import pytest

from tests.lab import image
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


class LabFactory:
    """Labs for a module whose fixture is parametrized (one lab per parameter): ``factory(suffix)`` makes one,
    ``factory.done(lab)`` removes it when its parameter's tests are over, the rest go at the module's end."""

    def __init__(self, base):
        self.base = base
        self.labs = []

    def __call__(self, suffix):
        lab = Lab("%s-%s" % (self.base, suffix))
        lab.destroy()
        self.labs.append(lab)
        return lab

    def done(self, lab):
        if not os.environ.get("POSITOPS_KEEP_LAB"):
            lab.destroy()

    def close(self):
        for lab in self.labs:
            self.done(lab)


@pytest.fixture(scope="module")
def lab_factory(request, node_image):
    factory = LabFactory(module_lab_prefix(request))
    yield factory
    factory.close()
