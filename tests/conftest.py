"""Scheduling of the whole suite over pytest-xdist workers (scripts/test: ``-n 3 --dist loadscope
--no-loadscope-reorder``, so that xdist keeps this file's order of the units).

Every test module is one unit of work, as with ``--dist loadfile``, with two exceptions: each Molecule scenario
(tests/molecule_scenarios) is a unit of its own, and the modules that share a product's lab cluster
(tests/lab_tests/conftest.py, ClusterPool) form one unit per product, so one worker builds that cluster once and
runs them one after the other. The longest units are handed out first, so that no long one starts last while the
other workers sit idle.

The units are xdist's scopes (a scheduler of our own below): xdist's ``xdist_group`` mark cannot carry them, as
its worker renames the test ids through an attribute that pytest 9.2 no longer reads.
"""

import pathlib

import pytest

# Modules sharing a pooled cluster, by product, in the order they run on it. "[param]" narrows a parametrized module
# to one product's tests.
POOLED = {
    "package_manager": ["test_rolling_upgrade.py", "test_rolling_upgrade_faults.py", "test_ha_to_single_node.py"],
    "connect": ["test_rolling_upgrade_connect.py", "test_rolling_upgrade_resume.py[connect]"],
    "workbench": ["test_rolling_upgrade_workbench.py", "test_rolling_upgrade_resume.py[workbench]"],
}
# Units that run longest, first; the rest keep their order. From a clean run's --durations (2026-12-05, 3 workers,
# seconds per unit, 8282 in all over a 2794 s run, so the workers end within a minute of each other): the Package
# Manager pool 1448, Molecule cluster 1435, Connect 1278, Workbench 835, the examples lab 804, Molecule
# rolling_upgrade 464 and infra 454, Molecule migrate_database 267 and ha_to_single_node 262,
# test_migrate_database.py 164. (2026-12-04: Molecule cluster 1995, the Package Manager pool ~1900.)
LONGEST_FIRST = ["molecule-cluster", "package_manager", "connect", "test_examples_lab.py", "workbench",
                 "molecule-rolling_upgrade", "molecule-infra", "molecule-ha_to_single_node", "molecule-migrate_database",
                 "test_migrate_database.py",
                 "test_examples_lab_aws.py", "test_emulator_connect.py", "test_modules_secure_cookie_key.py",
                 "test_emulator_workbench.py"]


def pooled_place(nodeid):
    """``(product, position among its modules)`` of a test on a pooled cluster, or None."""
    module = pathlib.PurePosixPath(nodeid.split("::", 1)[0]).name
    for product, modules in POOLED.items():
        for position, entry in enumerate(modules):
            name, _, param = entry.partition("[")
            if module == name and (not param or nodeid.endswith("[" + param)):
                return product, position
    return None


def unit_of(nodeid):
    """The unit of work a test belongs to: its module, its pooled product, or its Molecule scenario."""
    module, _, test = nodeid.partition("::")
    name = pathlib.PurePosixPath(module).name
    if name == "test_molecule.py":
        return "molecule-" + test.partition("[")[2].rstrip("]")
    place = pooled_place(nodeid)
    return place[0] if place else module


def rank(nodeid):
    unit = unit_of(nodeid)
    name = pathlib.PurePosixPath(unit).name
    place = pooled_place(nodeid)
    first = LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    return first, place[1] if place else 0


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: rank(item.nodeid))  # stable: tests keep their order within a module


@pytest.hookimpl(optionalhook=True)  # a plain pytest run (no xdist) has no such hook
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling  # only where xdist runs the session

    class UnitScheduling(LoadScopeScheduling):
        """xdist's scope scheduling, the scopes being this suite's units of work."""

        def _split_scope(self, nodeid):
            return unit_of(nodeid)

    return UnitScheduling(config, log)
