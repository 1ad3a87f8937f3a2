"""The Molecule scenarios (molecule/<name>), each one unit of the suite's pytest-xdist schedule.

Run by pytest, a scenario shares the workers with the lab tests instead of queueing behind the others in a
stream of its own: the scheduler (tests/conftest.py) starts the longest units first. Each scenario runs exactly as
an operator runs it, ``molecule test -s <name>``, with its Docker objects under ``<$POSITOPS_LAB>-m-<name>`` and
its whole output in build/logs/molecule-<name>.log.
"""

import os
import subprocess
import sys

import pytest

from tests.lab.cluster import ensure_collection_link
from tests.lab.image import REPO

SCENARIOS = sorted(path.parent.name for path in (REPO / "molecule").glob("*/molecule.yml"))
LOGS = REPO / "build" / "logs"


@pytest.mark.lab
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario, node_image, debs):
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / ("molecule-%s.log" % scenario)
    # Every scenario (and the playbooks its verifier runs) finds positops.ha under build/collections: no prerun
    # copy, which two scenarios side by side would delete under each other.
    env = dict(os.environ, POSITOPS_NODE_IMAGE=node_image, ANSIBLE_NOCOLOR="1", PY_COLORS="0",
               ANSIBLE_COLLECTIONS_PATH=str(ensure_collection_link()),
               POSITOPS_LAB="%s-m-%s" % (os.environ.get("POSITOPS_LAB", "it"), scenario.replace("_", "-")),
               PATH="%s:%s" % (os.path.dirname(sys.executable), os.environ.get("PATH", "")))
    with open(log, "w") as out:
        rc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "molecule"), "test", "-s", scenario],
                            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    assert rc == 0, "molecule test -s %s failed (rc=%s); its log, %s, ends:\n%s" % (
        scenario, rc, log, "".join(log.read_text().splitlines(True)[-80:]))
