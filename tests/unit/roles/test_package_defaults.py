"""The default download URLs are the file names Posit publishes, for each architecture.

The expected URLs are copied from Posit's own pages and tooling (cited in each role's defaults/main.yml):
Package Manager's installation guide and image builder, Connect's manual installation guide and Docker images,
Workbench's Docker images. The defaults are rendered with Ansible's own templating, as a play would.
"""

import pathlib

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLES = pathlib.Path(__file__).resolve().parents[3] / "roles"


def render(role, variable, facts=None, **overrides):
    loader = DataLoader()
    defaults = loader.load_from_file(str(ROLES / role / "defaults" / "main.yml"))
    variables = {key: trust_as_template(value) if isinstance(value, str) else value
                 for key, value in defaults.items()}
    variables.update(overrides)
    variables["ansible_facts"] = facts or {"architecture": "x86_64"}
    return Templar(loader=loader, variables=variables).template(variables[variable])


X86 = {"architecture": "x86_64"}
ARM = {"architecture": "aarch64"}


@pytest.mark.parametrize("facts,version,url", [
    (X86, "2023.12.0-13", "https://cdn.posit.co/package-manager/deb/amd64/rstudio-pm_2023.12.0-13_amd64.deb"),
    # The architecture is in the directory too (the old default hard-coded amd64 there).
    (ARM, "2024.11.0-7", "https://cdn.posit.co/package-manager/deb/arm64/rstudio-pm_2024.11.0-7_arm64.deb"),
    # Posit's links encode a "+" of a development version.
    (X86, "2026.01.0-dev+167-gd27bbec1d7",
     "https://cdn.posit.co/package-manager/deb/amd64/rstudio-pm_2026.01.0-dev%2B167-gd27bbec1d7_amd64.deb"),
])
def test_package_manager_url(facts, version, url):
    assert render("package_manager", "package_manager_package_url", facts,
                  package_manager_version=version) == url


@pytest.mark.parametrize("facts,version,distribution,url", [
    (X86, "2023.12.0", None, "https://cdn.posit.co/connect/2023.12/rstudio-connect_2023.12.0~ubuntu22_amd64.deb"),
    (X86, "2025.03.0", "ubuntu24", "https://cdn.posit.co/connect/2025.03/rstudio-connect_2025.03.0~ubuntu24_amd64.deb"),
    (ARM, "2025.03.0", "ubuntu24", "https://cdn.posit.co/connect/2025.03/rstudio-connect_2025.03.0~ubuntu24_arm64.deb"),
    (X86, "2025.04.0-dev+10-gbe0a4a3d31", "ubuntu24",
     "https://cdn.posit.co/connect/2025.04/rstudio-connect_2025.04.0-dev%2B10-gbe0a4a3d31~ubuntu24_amd64.deb"),
    # The lab's package server holds the emulator's files, named without the distribution part.
    (X86, "2023.12.0", "", "https://cdn.posit.co/connect/2023.12/rstudio-connect_2023.12.0_amd64.deb"),
])
def test_connect_url(facts, version, distribution, url):
    overrides = {"connect_version": version}
    if distribution is not None:
        overrides["connect_package_distribution"] = distribution
    assert render("connect", "connect_package_url", facts, **overrides) == url


@pytest.mark.parametrize("facts,version,url", [
    # Posit writes the "+" of the Debian version as "-" (the old default wrote %2B).
    (X86, "2023.12.0+369.pro3",
     "https://download2.rstudio.org/server/jammy/amd64/rstudio-workbench-2023.12.0-369.pro3-amd64.deb"),
    (X86, "2024.12.1+563.pro5",
     "https://download2.rstudio.org/server/jammy/amd64/rstudio-workbench-2024.12.1-563.pro5-amd64.deb"),
    (ARM, "2024.12.1+563.pro5",
     "https://download2.rstudio.org/server/jammy/arm64/rstudio-workbench-2024.12.1-563.pro5-arm64.deb"),
])
def test_workbench_url(facts, version, url):
    assert render("workbench", "workbench_package_url", facts, workbench_version=version) == url


@pytest.mark.parametrize("role", ["package_manager", "connect", "workbench"])
def test_a_checksum_is_required_by_default(role):
    loader = DataLoader()
    defaults = loader.load_from_file(str(ROLES / role / "defaults" / "main.yml"))
    assert defaults["%s_package_checksum" % role] == ""
    assert defaults["%s_package_checksum_required" % role] is True


def test_a_base_url_override_keeps_the_vendor_file_name():
    """The lab (and a mirror) replaces only the directory."""
    assert render("package_manager", "package_manager_package_url", X86,
                  package_manager_package_base_url="http://lab-pkgs") == "http://lab-pkgs/rstudio-pm_2023.12.0-13_amd64.deb"
