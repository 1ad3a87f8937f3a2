"""Pre-flight catches each unfit state before any change, naming the node, the check and the fix.

Each case injects one fault into one product's cluster, runs the pre-flight playbook (site.yml for the key case, to
prove that it stops before its first changing play), checks the failure, and removes the fault again. The faults
are spread over the three products, so each product's pre-flight meets at least one; the checks themselves are
shared (product_common), driven by each product's description.
"""

import re

import pytest

from conftest import DB, Product, host, lab_accounts, run_playbook

PM, CONNECT, WORKBENCH = Product("package_manager"), Product("connect"), Product("workbench")


def _backup(node, path):
    host(node).check_output("cp -p %s %s.preflight-test", path, path)


def _restore(node, path):
    host(node).check_output("mv -f %s.preflight-test %s", path, path)


def _renumber(node, user, uid, new_uid):
    _backup(node, "/etc/passwd")
    host(node).check_output("sed -i %s /etc/passwd", "s/^%s:x:%d:/%s:x:%d:/" % (user, uid, user, new_uid))


def _shift_clock(node, seconds):
    """Containers share the host's clock: libfaketime, preloaded into every new process, shifts what they read."""
    host(node).check_output("dpkg -s libfaketime >/dev/null 2>&1 || (apt-get update -qq && "
                            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime) >/dev/null")
    host(node).check_output("echo %s > /etc/faketimerc", "%+d" % seconds)
    host(node).check_output("dpkg -L libfaketime | grep '/libfaketime.so.1$' > /etc/ld.so.preload")


def _fault(product, node, inject, revert, label, fix, playbook="preflight.yml"):
    return dict(product=product, node=node, inject=inject, revert=revert, label=label, fix=fix, playbook=playbook)


PM_KEY = PM.spec["keys"][0]
CONNECT_CONFIG = CONNECT.spec["config_files"][0]
WB_USER = WORKBENCH.spec["account"][0]
WB_UID = lab_accounts()[WB_USER]["uid"]
WB_SHARED = WORKBENCH.spec["shared_dir"]

FAULTS = {
    "key mismatch": _fault(
        PM, PM.nodes[1],
        inject=lambda n: (_backup(n, PM_KEY),
                          host(n).check_output("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s", PM_KEY)),
        revert=lambda n: _restore(n, PM_KEY),
        label="[key mismatch]", fix="Fix: give every node the cluster key", playbook="site.yml"),
    "config drift": _fault(
        CONNECT, CONNECT.nodes[2],
        inject=lambda n: (_backup(n, CONNECT_CONFIG),
                          host(n).check_output("printf '%%s\\n' '[Debug]' 'Log = verbose' >> %s", CONNECT_CONFIG)),
        revert=lambda n: _restore(n, CONNECT_CONFIG),
        label="[config drift]", fix="Fix: set the value in the inventory"),
    "wrong uid": _fault(
        WORKBENCH, WORKBENCH.nodes[2],
        inject=lambda n: _renumber(n, WB_USER, WB_UID, WB_UID + 777),
        revert=lambda n: _restore(n, "/etc/passwd"),
        label="[uid/gid mismatch]", fix="usermod -u %d %s" % (WB_UID, WB_USER)),
    "unshared directory": _fault(
        WORKBENCH, WORKBENCH.nodes[1],
        # A tmpfs over the product's shared directory: the node now sees a local, empty directory.
        inject=lambda n: host(n).check_output("mount -t tmpfs unshared %s", WB_SHARED),
        revert=lambda n: host(n).check_output("umount %s", WB_SHARED),
        label="[storage not shared]", fix="Fix: mount the shared storage at %s" % WB_SHARED),
    "clock offset": _fault(
        CONNECT, CONNECT.nodes[0],
        inject=lambda n: _shift_clock(n, 120),
        revert=lambda n: host(n).check_output("rm -f /etc/ld.so.preload /etc/faketimerc"),
        label="[clock offset]", fix="Fix: synchronise the clocks with NTP"),
    "stopped database": _fault(
        PM, PM.nodes[0],
        inject=lambda n: host(DB).check_output("systemctl stop postgresql"),
        revert=lambda n: host(DB).check_output("systemctl start postgresql"),
        label="[database unreachable]", fix="Fix: start PostgreSQL"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_preflight_catches_the_fault_before_any_change(fault):
    case = FAULTS[fault]
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
    # Only the faulty node fails. A stopped database fails every node of the first product checked (Package
    # Manager), each naming itself, and the run stops there.
    failed_nodes = set(re.findall(r"fatal: \[([^\]]+)\]", output)) | set(
        re.findall(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=[1-9]", output, re.M))
    if fault == "stopped database":
        assert failed_nodes == set(case["product"].nodes), failed_nodes
    else:
        assert failed_nodes == {node}, failed_nodes


def test_preflight_passes_on_the_fit_cluster():
    result = run_playbook("preflight.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "every check applies" in result.stdout
