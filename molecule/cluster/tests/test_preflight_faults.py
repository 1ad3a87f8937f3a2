"""Pre-flight catches each unfit state before any change, naming the node, the check and the fix; site.yml repairs
what it can repair itself, and every fix works when followed.

Stop cases: each injects one fault into one product's cluster, runs pre-flight (preflight.yml, or site.yml to prove
that it stops before its first changing play), checks the failure, and removes the fault again (or follows the
fix). The faults are spread over the three products, so each product's pre-flight meets several; the checks
themselves are shared (product_common and the filter positops.ha.preflight_problems), driven by each product's
record.

Repair case: faults site.yml repairs itself (configuration drift of a file it writes, a key mode, chrony stopped,
Connect's metrics directory on the share) plus a rebuilt Package Manager node (package and key removed) stop
preflight.yml, and site.yml reports them, goes on, repairs them - and gives pm1 the cluster's key, not the one
its package makes when it is reinstalled - after which pre-flight passes.
"""

import re
import shlex

import pytest

from conftest import DB, Product, host, lab_accounts, run_playbook

PM, CONNECT, WORKBENCH = Product("package_manager"), Product("connect"), Product("workbench")
BACKUP_DIR = "/root/preflight-test-backups"


def _backup(node, path):
    """Keep a copy outside the product's configuration directory (which pre-flight compares as a whole)."""
    host(node).check_output("mkdir -p %s && cp -p %s %s/", BACKUP_DIR, path, BACKUP_DIR)


def _restore(node, path):
    host(node).check_output("mv -f %s/%s %s", BACKUP_DIR, path.rsplit("/", 1)[-1], path)


def _renumber(node, user, uid, new_uid):
    _backup(node, "/etc/passwd")
    host(node).check_output("sed -i %s /etc/passwd", "s/^%s:x:%d:/%s:x:%d:/" % (user, uid, user, new_uid))


def _shift_clock(node, seconds):
    """Containers share the host's clock: libfaketime, preloaded into every new process, shifts what they read."""
    host(node).check_output("dpkg -s libfaketime >/dev/null 2>&1 || (apt-get update -qq && "
                            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime) >/dev/null")
    host(node).check_output("echo %s > /etc/faketimerc", "%+d" % seconds)
    host(node).check_output("dpkg -L libfaketime | grep '/libfaketime.so.1$' > /etc/ld.so.preload")


def _fault(product, nodes, inject, revert, label, fix, playbook="preflight.yml", extra=(), limit=None):
    return dict(product=product, nodes=nodes, inject=inject, revert=revert, label=label, fix=fix, playbook=playbook,
                extra=list(extra), limit=limit)


PM_KEY = PM.spec["keys"][0]
CONNECT_CONFIG = CONNECT.spec["config_files"][0]
WB_USER = WORKBENCH.spec["account"][0]
WB_UID = lab_accounts()[WB_USER]["uid"]
WB_SHARED = WORKBENCH.spec["shared_dir"]
NOTHING = lambda node: None  # noqa: E731
EFS_MOUNTS = ('{"shared_storage_mounts": [{"path": "/srv/shared", "src": "fs-0123abcd.efs.eu-west-1.amazonaws.com:/",'
              ' "product": "workbench", "storage": "efs"}]}')

FAULTS = {
    "config drift": _fault(
        CONNECT, [CONNECT.nodes[-1]],
        inject=lambda n: (_backup(n, CONNECT_CONFIG),
                          host(n).check_output("printf '%%s\\n' '[Debug]' 'Log = verbose' >> %s", CONNECT_CONFIG)),
        revert=lambda n: _restore(n, CONNECT_CONFIG),
        label="[config drift]", fix="Fix: run playbooks/site.yml: it rewrites rstudio-connect.gcfg"),
    # A file site.yml does not write stops site.yml too: it cannot repair it.
    "unmanaged config file": _fault(
        WORKBENCH, [WORKBENCH.nodes[-1]],
        inject=lambda n: host(n).check_output("echo 'session-timeout-minutes=5' > /etc/rstudio/rsession.conf"),
        revert=lambda n: host(n).check_output("rm -f /etc/rstudio/rsession.conf"),
        label="[config drift]", fix="site.yml does not write it", playbook="site.yml"),
    "wrong uid": _fault(
        WORKBENCH, [WORKBENCH.nodes[-1]],
        inject=lambda n: _renumber(n, WB_USER, WB_UID, WB_UID + 777),
        revert=lambda n: _restore(n, "/etc/passwd"),
        label="[uid/gid mismatch]", fix="usermod -u %d %s" % (WB_UID, WB_USER)),
    "unshared directory": _fault(
        WORKBENCH, [WORKBENCH.nodes[1]],
        # A tmpfs over the product's shared directory: the node now sees a local, empty directory.
        inject=lambda n: host(n).check_output("mount -t tmpfs unshared %s", WB_SHARED),
        revert=lambda n: host(n).check_output("umount %s", WB_SHARED),
        label="[storage not shared]", fix="Fix: mount the shared storage at %s" % WB_SHARED),
    "clock offset": _fault(
        CONNECT, [CONNECT.nodes[0]],
        inject=lambda n: _shift_clock(n, 120),
        revert=lambda n: host(n).check_output("rm -f /etc/ld.so.preload /etc/faketimerc"),
        label="[clock offset]", fix="Fix: synchronise the clocks with NTP"),
    "stopped database": _fault(
        PM, PM.nodes,
        inject=lambda n: host(DB).check_output("systemctl stop postgresql"),
        revert=lambda n: host(DB).check_output("systemctl start postgresql"),
        label="[database unreachable]", fix="Fix: start PostgreSQL"),
    # The inventory puts every node's Metrics.DataPath on the share: site.yml would write it, so it stops.
    "metrics path on the share": _fault(
        CONNECT, CONNECT.nodes, inject=NOTHING, revert=NOTHING, playbook="site.yml",
        extra=["-e", "connect_metrics_data_path=/srv/shared/rstudio-connect/metrics"],
        label="[metrics path]", fix="set connect_metrics_data_path to a local directory"),
    # Link-based locks on EFS: refused from the inventory's mount settings, before site.yml mounts anything.
    "linkbased locks on EFS": _fault(
        WORKBENCH, WORKBENCH.nodes, inject=NOTHING, revert=NOTHING, playbook="site.yml", extra=["-e", EFS_MOUNTS],
        label="[lock type]", fix="set workbench_lock_type: advisory"),
    # The lock test in directories that are not shared: every node takes every lock.
    "lock test off the share": _fault(
        WORKBENCH, WORKBENCH.nodes[1:], inject=NOTHING, revert=NOTHING,
        extra=["-e", "workbench_preflight_locktest=true", "-e", "workbench_preflight_locktest_dir=/var/tmp"],
        label="[lock test]", fix="a directory on the shared home storage"),
}


def _fingerprint(node, path):
    """The key's fingerprint as pre-flight and secure_cookie_key compute it: SHA-256 without surrounding space."""
    return host(node).check_output("python3 -c %s %s", shlex.quote(
        "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read().strip()).hexdigest())"), path)


def _failed_nodes(output):
    return set(re.findall(r"fatal: \[([^\]]+)\]", output)) | set(
        re.findall(r"^(\S+)\s+: ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=[1-9]", output, re.M))


def _assert_nothing_changed(output):
    recap = re.findall(r"changed=(\d+)", output)
    assert recap and set(recap) == {"0"}, recap
    assert "PLAY [Base of every node" not in output


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_preflight_catches_the_fault_before_any_change(fault):
    case = FAULTS[fault]
    for node in case["nodes"]:
        case["inject"](node)
    try:
        # Limited to the product: site.yml stops (or not) on its nodes just the same, for a third of the tasks.
        result = run_playbook(case["playbook"], *(case["extra"] + ["--limit", case["limit"] or case["product"].name]))
    finally:
        for node in case["nodes"]:
            case["revert"](node)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    failures = [line for line in output.splitlines() if case["label"] in line]
    assert failures, output[-3000:]
    for node in case["nodes"]:
        assert any(node in line for line in failures), (node, failures)
    assert case["fix"] in output, output[-3000:]
    # Nothing changed: pre-flight only reads, and site.yml stopped before its first changing play.
    _assert_nothing_changed(output)
    # Only the faulty nodes fail, each naming itself.
    assert _failed_nodes(output) == set(case["nodes"]), _failed_nodes(output)


def test_nodes_holding_different_keys_stop_site_listing_fingerprints_and_the_vault_fix_works():
    """No key given and the nodes disagree: no node's copy can be trusted, so site.yml stops before any change,
    listing every node's fingerprint (never a key); giving the cluster's key (as the fix says) repairs it."""
    odd = PM.nodes[1]
    cluster_key = host(PM.nodes[0]).check_output("cat %s", PM_KEY)
    before = _fingerprint(PM.nodes[0], PM_KEY)
    _backup(odd, PM_KEY)
    try:
        host(odd).check_output("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s", PM_KEY)
        odd_key = host(odd).check_output("cat %s", PM_KEY)
        stopped = run_playbook("site.yml", "--limit", "package_manager")
        output = stopped.stdout + stopped.stderr
        assert stopped.returncode != 0, output[-3000:]
        assert _failed_nodes(output) == set(PM.nodes), _failed_nodes(output)
        failures = [line for line in output.splitlines() if "[key mismatch]" in line]
        fingerprints = dict((node, _fingerprint(node, PM_KEY)) for node in PM.nodes)
        for node in PM.nodes:
            assert any(line.count(fingerprints[node][:16]) and node in line for line in failures), (node, failures)
        assert "package_manager_encryption_key" in output and cluster_key not in output and odd_key not in output
        _assert_nothing_changed(output)

        # The fix: give the cluster's key in the inventory (here on the command line), run site.yml.
        fixed = run_playbook("site.yml", "--limit", "package_manager", "-e",
                             "package_manager_encryption_key=%s" % cluster_key, timeout=1500)
        output = fixed.stdout + fixed.stderr
        assert fixed.returncode == 0, output[-3000:]
        assert cluster_key not in output
        assert [_fingerprint(node, PM_KEY) for node in PM.nodes] == [before] * len(PM.nodes)
        again = run_playbook("preflight.yml", "--limit", "package_manager")
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    finally:
        _restore(odd, PM_KEY)
        host(odd).check_output("systemctl restart rstudio-pm")


def test_site_repairs_what_it_can_and_keeps_the_cluster_key_on_a_rebuilt_node():
    rebuilt, loose_key = PM.nodes[0], PM.nodes[1]
    drifted, metrics_node = CONNECT.nodes[0], CONNECT.nodes[1]
    no_chrony, lock_drift = WORKBENCH.nodes[0], WORKBENCH.nodes[1]
    old = dict((node, _fingerprint(node, PM_KEY)) for node in PM.nodes)
    assert len(set(old.values())) == 1, old

    # pm1 rebuilt: package removed (its configuration stays, as dpkg -r leaves it) and its key gone. When site.yml
    # reinstalls the package, it starts and makes a new key of its own before the key is distributed.
    host(rebuilt).check_output("dpkg -r rstudio-pm >/dev/null && rm -f %s", PM_KEY)
    host(loose_key).check_output("chmod 0644 %s", PM_KEY)
    host(drifted).check_output("printf '%%s\\n' '[Debug]' 'Log = verbose' >> %s", CONNECT_CONFIG)
    host(metrics_node).check_output("sed -i '/^DataPath/d' %s", CONNECT_CONFIG)
    host(no_chrony).check_output("systemctl stop chrony")
    host(lock_drift).check_output("sed -i 's/^lock-type=.*/lock-type=advisory/' /etc/rstudio/file-locks")
    expected = [("[config drift]", drifted), ("[key mode]", loose_key), ("[time sync]", no_chrony),
                ("[metrics path]", metrics_node), ("[config drift]", lock_drift)]

    strict = run_playbook("preflight.yml")
    output = strict.stdout + strict.stderr
    assert strict.returncode != 0, output[-3000:]
    for label, node in expected:
        assert any(label in line and node in line and "Fix: run playbooks/site.yml" in line
                   for line in output.splitlines()), (label, node, output[-3000:])
    _assert_nothing_changed(output)

    site = run_playbook("site.yml", timeout=2400)
    output = site.stdout + site.stderr
    assert site.returncode == 0, output[-5000:]
    report = output[:output.index("PLAY [Base of every node")]
    for label, node in expected:
        assert any(label in line and node in line for line in report.splitlines()), (label, node, report[-3000:])

    # Every node holds the key it held before: the cluster's, not the one pm1's package made.
    assert dict((node, _fingerprint(node, PM_KEY)) for node in PM.nodes) == old
    assert host(rebuilt).package("rstudio-pm").is_installed
    assert host(loose_key).file(PM_KEY).mode == 0o600
    assert host(no_chrony).service("chrony").is_running
    # The repaired cluster is fit: pre-flight passes on every node, and every check applies there.
    after = run_playbook("preflight.yml")
    assert after.returncode == 0, (after.stdout + after.stderr)[-3000:]
    assert "every check applies" in after.stdout


def test_lock_test_passes_on_the_shared_volume():
    result = run_playbook("preflight.yml", "--limit", "workbench", "-e", "workbench_preflight_locktest=true")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Try to take the locks on the other nodes" in output and "[lock test]" not in output
    # The scratch directory is gone.
    assert host(WORKBENCH.nodes[0]).check_output("ls -A /srv/shared | grep -c positops-locktest || true") == "0"


def test_no_scheduled_jobs_anywhere_is_a_warning():
    result = run_playbook("preflight.yml", "--limit", "connect", "-e", "connect_schedule_concurrency=0")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "[schedule concurrency] Posit Connect: the inventory sets Applications.ScheduleConcurrency = 0 on every" \
           " node" in output


def test_secret_values_are_masked_in_drift_reports():
    node = CONNECT.nodes[1]
    _backup(node, CONNECT_CONFIG)
    try:
        host(node).check_output("printf '%%s\\n' '[SMTP]' 'Password = smtp-Secret-42' '[LDAP]' "
                                "'BindPassword = ldap-Secret-43' >> %s", CONNECT_CONFIG)
        result = run_playbook("preflight.yml", "--limit", "connect")
    finally:
        _restore(node, CONNECT_CONFIG)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "smtp-Secret-42" not in output and "ldap-Secret-43" not in output
    assert "rstudio-connect.gcfg:SMTP.Password = <secret sha256:" in output
    assert "lab-Db-Secret-7" not in output
