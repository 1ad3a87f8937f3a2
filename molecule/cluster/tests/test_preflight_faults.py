"""Pre-flight catches each unfit state before any change, naming the node, the check and the fix.

Each case injects one fault on a converged cluster, runs the pre-flight playbook (site.yml for the key case, to
prove that it stops before its first changing play), checks the failure, and removes the fault again.
"""

import re

import pytest

from conftest import DB, NODES, PRODUCT, SPEC, host, lab_accounts, run_playbook

USER, GROUP = SPEC["account"]
UID = lab_accounts()[USER]["uid"]
DRIFT_LINE = {"package_manager": ("/etc/rstudio-pm/rstudio-pm.gcfg", "[Debug]\nLog = verbose"),
              "connect": ("/etc/rstudio-connect/rstudio-connect.gcfg", "[Debug]\nLog = verbose"),
              "workbench": ("/etc/rstudio/rserver.conf", "www-frame-origin=same")}[PRODUCT]


def _backup(node, path):
    host(node).check_output("cp -p %s %s.preflight-test", path, path)


def _restore(node, path):
    host(node).check_output("mv -f %s.preflight-test %s", path, path)


FAULTS = {
    "key mismatch": dict(
        node=NODES[1] if NODES else None,
        inject=lambda n: (_backup(n, SPEC["keys"][0]),
                          host(n).check_output("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s",
                                               SPEC["keys"][0])) if SPEC["keys"] else None,
        revert=lambda n: _restore(n, SPEC["keys"][0]),
        label="[key mismatch]", fix="Fix: give every node the cluster key", playbook="site.yml"),
    "config drift": dict(
        node=NODES[2] if NODES else None,
        inject=lambda n: (_backup(n, DRIFT_LINE[0]),
                          host(n).check_output("printf '%%s\\n' %s >> %s", DRIFT_LINE[1].replace("\n", "' '"),
                                               DRIFT_LINE[0])),
        revert=lambda n: _restore(n, DRIFT_LINE[0]),
        label="[config drift]", fix="Fix: set the value in the inventory", playbook="preflight.yml"),
    "wrong uid": dict(
        node=NODES[2] if NODES else None,
        inject=lambda n: (_backup(n, "/etc/passwd"),
                          host(n).check_output("sed -i %s /etc/passwd", "s/^%s:x:%d:/%s:x:%d:/" % (USER, UID, USER, UID + 777))),
        revert=lambda n: _restore(n, "/etc/passwd"),
        label="[uid/gid mismatch]", fix="usermod -u %d %s" % (UID, USER), playbook="preflight.yml"),
    "unshared directory": dict(
        node=NODES[1] if NODES else None,
        # A tmpfs over the product's shared directory: the node now sees a local, empty directory.
        inject=lambda n: host(n).check_output("mount -t tmpfs unshared %s", SPEC["shared_dir"]),
        revert=lambda n: host(n).check_output("umount %s", SPEC["shared_dir"]),
        label="[storage not shared]", fix="Fix: mount the shared storage at %s" % SPEC["shared_dir"],
        playbook="preflight.yml"),
    "stopped database": dict(
        node=NODES[0] if NODES else None,
        inject=lambda n: host(DB).check_output("systemctl stop postgresql"),
        revert=lambda n: host(DB).check_output("systemctl start postgresql"),
        label="[database unreachable]", fix="Fix: start PostgreSQL", playbook="preflight.yml"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_preflight_catches_the_fault_before_any_change(fault):
    case = FAULTS[fault]
    if fault == "key mismatch" and not SPEC["keys"]:
        pytest.skip("Connect has no key file shared between nodes")
    node = case["node"]
    case["inject"](node)
    try:
        result = run_playbook(case["playbook"])
    finally:
        case["revert"](node)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    failures = [line for line in output.splitlines() if case["label"] in line]
    assert failures, output[-3000:]
    assert any(node in line for line in failures), (node, failures)
    assert case["fix"] in output, output[-3000:]
    # Nothing changed: pre-flight only reads, and site.yml stopped before its first changing play.
    recap = re.findall(r"changed=(\d+)", output)
    assert recap and set(recap) == {"0"}, recap
    assert "PLAY [Base of every node" not in output
    # Only the faulty node fails (database: every product node fails, each naming itself).
    failed_nodes = set(re.findall(r"fatal: \[([^\]]+)\]", output)) | set(
        re.findall(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=[1-9]", output, re.M))
    if fault == "stopped database":
        assert failed_nodes == set(NODES), failed_nodes
    else:
        assert failed_nodes == {node}, failed_nodes


def test_preflight_passes_on_the_fit_cluster():
    result = run_playbook("preflight.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "every check applies" in result.stdout
