"""Lab fixtures for the hardening tests (issue 15): the node image and the emulator's .debs of the lab suite
(tests/lab_tests/conftest.py); every test here needs the Docker lab."""

import pytest

from tests.lab_tests import conftest as lab_suite

node_image = lab_suite.node_image
debs = lab_suite.debs


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.lab)
