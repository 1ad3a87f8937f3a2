"""Both example inventories build a cluster in the lab and pass pre-flight, their group_vars unchanged (issue 15).

tests/hardening/examplelab.py replaces only the host addresses, the vault secrets and what the lab stands in for
(the vendor's download site with the real checksums of its files, NFS as Docker volumes). Each example gets its
own lab, built and removed in turn (one lab at a time on this machine).

The on-premises lab then serves the secrets test: every playbook run of this module is at -vvv, with a package URL
that carries a password and a token, and the last test greps every log of the module for every secret of the lab.
"""

import base64
import os
import secrets

import pytest

from tests.hardening.examplelab import ExampleLab
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab

BASE = os.environ.get("POSITOPS_LAB", "hd")
DB_PASSWORD = "lab-Db-Secret-7"
URL_PASSWORD = "lab-Url-Pass-8"
URL_TOKEN = "lab-Url-Token-9"
STATS_PASSWORD = "lab-Stats-Secret-6"
ON_PREMISES_VERSIONS = {"package_manager": "2023.12.0-13", "connect": "2023.12.0", "workbench": "2023.12.0+369.pro3"}


def with_url_secrets(variables):
    """The package URLs as a signed or authenticated download site gives them: user:password@ and ?token=."""
    result = dict(variables)
    for key, value in variables.items():
        if key.endswith("_package_url"):
            result[key] = value.replace("http://", "http://lab-user:%s@" % URL_PASSWORD) + "?token=" + URL_TOKEN
    return result


def keep(_lab):
    return bool(os.environ.get("POSITOPS_KEEP_LAB"))


@pytest.fixture(scope="module")
def on_premises(node_image, debs):
    lab = Lab("%s-onprem" % BASE)
    # POSITOPS_REUSE_LAB=1 runs again on the containers a kept lab (POSITOPS_KEEP_LAB=1) left.
    reuse = bool(os.environ.get("POSITOPS_REUSE_LAB")) and lab.node("pm1").exec("true", check=False).returncode == 0
    if not reuse:
        lab.destroy()
    example = ExampleLab(lab, "on_premises", secrets={
        "vault_package_manager_db_password": DB_PASSWORD,
        "vault_connect_db_password": DB_PASSWORD,
        "vault_workbench_db_password": DB_PASSWORD,
        "vault_package_manager_encryption_key": secrets.token_hex(32),
        "vault_workbench_secure_cookie_key": secrets.token_hex(32),
    }, volumes={
        # One volume per NFS export of the example, mounted where the example mounts it.
        "package_manager": {"nfs-rstudio-pm": "/srv/shared/rstudio-pm"},
        "connect": {"nfs-rstudio-connect": "/srv/shared/rstudio-connect"},
        "workbench": {"nfs-home": "/home", "nfs-rstudio-server": "/srv/shared/rstudio-server"},
    })
    example.secrets.update({
        "vault_load_balancer_tls_private_key": example.site_certificate("posit.example.com"),
        "vault_load_balancer_stats_password": STATS_PASSWORD,
    })
    if not reuse:
        example.start()
    lab_vars = with_url_secrets(example.package_vars(ON_PREMISES_VERSIONS))
    lab_vars.update({"shared_storage_mount_state": "present", "postgresql_client_addresses": [example.subnet()]})
    lab_vars.update(example.time_vars(example.groups()["database"][0]))
    example.write_inventory(lab_vars)
    example.site = example.require(example.playbook("site.yml", verbosity=3), "site.yml")
    yield example
    if not keep(lab):
        lab.destroy()


def test_on_premises_nodes_pass_the_platform_check(on_premises):
    result = on_premises.require(on_premises.playbook("platform.yml", verbosity=3), "the platform check")
    assert set(result.recap()) == set(on_premises.hosts())


def test_on_premises_builds_and_passes_preflight(on_premises):
    result = on_premises.require(on_premises.playbook("preflight.yml", verbosity=3), "preflight.yml")
    assert "failed=0" in result.output


def test_on_premises_workbench_nodes_each_have_their_own_name(on_premises):
    listing = on_premises.node("workbench1.posit.example.com").output("rstudio-server list-nodes")
    assert "workbench1.posit.example.com" in listing and "workbench2.posit.example.com" in listing
    for host in ("workbench1.posit.example.com", "workbench2.posit.example.com"):
        conf = on_premises.node(host).read_file("/etc/rstudio/load-balancer")
        assert "www-host-name=%s" % host in conf.replace(" ", "")


def test_on_premises_connect_data_directory_settles(on_premises):
    """A second run changes nothing: Connect's data directory no longer flips between two owners and modes."""
    node = on_premises.node("connect1.posit.example.com")
    assert node.output("stat -c '%U:%G %a' /srv/shared/rstudio-connect/data") == "root:root 755"
    again = on_premises.require(on_premises.playbook("site.yml", verbosity=3, log="site-again.log"), "site.yml again")
    assert again.changed() == 0, again.recap()
    assert node.output("stat -c '%U:%G %a' /srv/shared/rstudio-connect/data") == "root:root 755"


def test_on_premises_encryption_key_is_the_vaulted_one_everywhere(on_premises):
    keys = {on_premises.node(host).read_file("/var/lib/rstudio-pm/rstudio-pm.key").strip()
            for host in ("pm1.posit.example.com", "pm2.posit.example.com")}
    assert keys == {on_premises.secrets["vault_package_manager_encryption_key"]}


def test_on_premises_rolling_upgrade_at_the_same_version_has_nothing_to_do(on_premises):
    result = on_premises.require(on_premises.playbook(
        "rolling_upgrade.yml", extra_vars={"rolling_upgrade_product": "package_manager"}, verbosity=3,
        log="rolling_upgrade.log"), "rolling_upgrade.yml")
    assert result.changed() == 0, result.recap()


def pem_body_lines(name, pem):
    """The base64 lines of a PEM key, each a secret to look for (the BEGIN/END lines are not)."""
    return {"%s line %d" % (name, number): line for number, line in enumerate(pem.splitlines())
            if len(line) >= 40 and not line.startswith("-----")}


def lab_secrets(example):
    """Every secret of the on-premises lab: what the vault holds, what the URL carries, the keys read off the nodes."""
    found = {
        "database password": DB_PASSWORD,
        "package URL password": URL_PASSWORD,
        "package URL token": URL_TOKEN,
        "package URL basic auth header": base64.b64encode(("lab-user:%s" % URL_PASSWORD).encode()).decode(),
        "Package Manager encryption key": example.secrets["vault_package_manager_encryption_key"],
        "Workbench secure cookie key": example.secrets["vault_workbench_secure_cookie_key"],
        "load balancer stats password": STATS_PASSWORD,
    }
    found.update(pem_body_lines("TLS private key", example.secrets["vault_load_balancer_tls_private_key"]))
    node = example.node("workbench1.posit.example.com")
    found["secure cookie key on the node"] = node.read_file("/etc/rstudio/secure-cookie-key").strip()
    found.update(pem_body_lines("launcher.pem", node.read_file("/etc/rstudio/launcher.pem")))
    found["Package Manager key on the node"] = example.node("pm1.posit.example.com").read_file(
        "/var/lib/rstudio-pm/rstudio-pm.key").strip()
    return {name: value for name, value in found.items() if value}


def test_no_log_of_this_lab_holds_a_secret(on_premises):
    """Every playbook run above was at -vvv (site.yml twice, preflight.yml, rolling_upgrade.yml)."""
    logs = sorted(on_premises.dir.glob("*.log"))
    assert {log.name for log in logs} >= {"site.log", "preflight.log"}
    assert all("-vvv" in log.read_text()[:20000] or "ESTABLISH" in log.read_text() for log in logs)
    leaks = []
    for log in logs:
        text = log.read_text()
        for name, value in lab_secrets(on_premises).items():
            if value in text:
                line = next(line for line in text.splitlines() if value in line)
                leaks.append("%s: %s in %r" % (log.name, name, line[:300]))
    assert not leaks, "\n".join(leaks)
