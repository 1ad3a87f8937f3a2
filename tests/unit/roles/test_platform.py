"""node_base's platform entry point: Debian 12 passes; any other system is refused with one message that names
what is supported. The facts are those Ansible's setup module reports on each system."""

import pytest

from .conftest import failure_messages

DEBIAN_12 = {"distribution": "Debian", "distribution_major_version": "12", "distribution_version": "12.8",
             "os_family": "Debian", "architecture": "x86_64", "pkg_mgr": "apt", "service_mgr": "systemd",
             "virtualization_type": "kvm", "virtualization_role": "guest"}
PLATFORM = [{"name": "Check the platform", "ansible.builtin.include_role": {
    "name": "positops.ha.node_base", "tasks_from": "platform"}}]
SUPPORTED = "positops.ha supports Debian 12 on x86_64 or aarch64 with systemd"


def facts(**changes):
    result = dict(DEBIAN_12)
    result.update(changes)
    return result


@pytest.mark.parametrize("system", [DEBIAN_12, facts(architecture="aarch64")], ids=["amd64", "arm64"])
def test_debian_12_passes(run_playbook, system):
    result = run_playbook(PLATFORM, facts=system)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("system,named", [
    (facts(distribution="Rocky", distribution_major_version="9", distribution_version="9.3", os_family="RedHat",
           pkg_mgr="dnf"), "Rocky 9.3 (RedHat family, x86_64, package manager dnf"),
    (facts(distribution="RedHat", distribution_major_version="8", distribution_version="8.9", os_family="RedHat",
           pkg_mgr="dnf"), "RedHat 8.9 (RedHat family"),
    (facts(distribution="Ubuntu", distribution_major_version="22", distribution_version="22.04"), "Ubuntu 22.04"),
    (facts(distribution="Ubuntu", distribution_major_version="24", distribution_version="24.04"), "Ubuntu 24.04"),
    (facts(distribution_major_version="11", distribution_version="11.9"), "Debian 11.9"),
    (facts(architecture="ppc64le"), "Debian 12.8 (Debian family, ppc64le"),
    (facts(service_mgr="sysvinit"), "service manager sysvinit"),
], ids=["rocky9", "rhel8", "ubuntu2204", "ubuntu2404", "debian11", "ppc64le", "no-systemd"])
def test_other_systems_are_refused_naming_what_is_supported(run_playbook, system, named):
    result = run_playbook(PLATFORM, facts=system)
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = failure_messages(result.json)
    assert message.startswith("localhost: ")
    assert named in message
    assert SUPPORTED in message
    assert "Ubuntu 22.04 and 24.04 are refused" in message


def test_facts_are_gathered_when_the_play_did_not(run_playbook):
    """A play with gather_facts: false (every playbook's pre-flight) gets the facts it needs: on this Debian
    machine the check runs setup and passes or refuses by the real facts, never on undefined ones."""
    result = run_playbook(PLATFORM)
    names = [task["task"]["name"] for play in result.json["plays"] for task in play["tasks"]]
    assert "positops.ha.node_base : Read the operating system facts" in names
    assert "is undefined" not in result.stdout
