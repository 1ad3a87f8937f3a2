"""The node image and the emulator's .debs of the lab suite (tests/lab_tests/conftest.py)."""

from tests.lab_tests import conftest as lab_suite

node_image = lab_suite.node_image
debs = lab_suite.debs
