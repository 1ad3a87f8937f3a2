"""An example inventory (inventories/examples/<name>) run unchanged against lab containers.

Only what ties the inventory to a place is replaced, in a copy of ``hosts.yml`` and one extra-vars file:
- the host addresses: each ``ansible_host`` becomes a lab container (Docker connection), and every inventory host
  name and external service name (the database, the NFS server) is a DNS alias of its container on the lab network;
  the PostgreSQL client networks are the lab's subnet;
- the secrets the example expects in Ansible Vault (``vault_*``);
- what the lab stands in for: the vendor's download site (the lab's package server and the real SHA-256 of its
  .debs), NFS (one Docker volume per export, fstab entries only: ``shared_storage_mount_state: present``), the
  site's NTP servers (no NTP server is reachable from the lab: one inventory host is the local time reference and
  the others follow it, as in inventories/lab), the site's TLS certificate (``files/<name>.pem`` beside the
  inventory, a self-signed one here, its key in the vault variables), and the site's addresses a load balancer binds
  (the load balancer containers may bind addresses they do not hold: ``net.ipv4.ip_nonlocal_bind``).
The example's group_vars are used as they are (a symlink), so a change there is what the lab runs.
"""

import hashlib
import ipaddress
import json
import os
import pathlib
import shutil
import subprocess
import time

import yaml

from tests.lab.cluster import VENV_BIN, PlaybookResult, ensure_collection_link
from tests.lab.lab import DEBS_DIR, REPO, docker, LabError

EXAMPLES = REPO / "inventories" / "examples"
PRODUCT_PACKAGES = {"package_manager": "rstudio-pm", "connect": "rstudio-connect", "workbench": "rstudio-workbench"}


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def deb_name(package, version):
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    if package == "rstudio-workbench":
        return "%s-%s-%s.deb" % (package, version, arch)
    return "%s_%s_%s.deb" % (package, version, arch)


class ExampleLab:
    def __init__(self, lab, example, secrets, volumes, aliases=None):
        """``volumes``: {group: {volume name: mount path}} mounted on every host of the group; ``aliases``: more
        DNS names {container short name: [names]} (e.g. a managed database the inventory only names)."""
        self.lab = lab
        self.example = example
        self.source = EXAMPLES / example
        self.hosts_yml = yaml.safe_load((self.source / "hosts.yml").read_text())
        self.secrets = secrets
        self.volumes = volumes
        self.extra_aliases = aliases or {}
        self.dir = REPO / "build" / "labs" / lab.prefix
        self.inventory = self.dir / "inventory"

    # -- inventory --------------------------------------------------------------------------------------------
    def groups(self):
        return {group: list((spec or {}).get("hosts") or {})
                for group, spec in self.hosts_yml["all"]["children"].items()}

    def hosts(self):
        seen = []
        for members in self.groups().values():
            seen += [host for host in members if host not in seen]
        return seen

    @staticmethod
    def short(host):
        return host.split(".")[0]

    def container(self, host):
        return self.lab.container_name(self.short(host))

    def node(self, host):
        return self.lab.node(self.short(host))

    # -- containers -------------------------------------------------------------------------------------------
    def start(self):
        self.lab.start_package_server(DEBS_DIR)
        for host in self.hosts():
            volumes = {}
            for group, members in self.groups().items():
                if host in members:
                    volumes.update({self.lab.volume(name): path for name, path in self.volumes.get(group, {}).items()})
            sysctls = {"net.ipv4.ip_nonlocal_bind": 1} if host in self.groups().get("load_balancer", []) else {}
            self.lab.start_node(self.short(host), volumes=volumes, sysctls=sysctls)
            self.alias(self.short(host), [host])
        for short, names in self.extra_aliases.items():
            self.alias(short, names)

    def alias(self, short, names):
        """Add DNS names to a container on the lab network (reconnect with the aliases)."""
        container = self.lab.container_name(short)
        docker("network", "disconnect", self.lab.network, container)
        args = ["network", "connect"]
        for name in [short] + list(names):
            args += ["--alias", name]
        docker(*(args + [self.lab.network, container]))

    def subnet(self):
        data = json.loads(docker("network", "inspect", self.lab.network).stdout)[0]
        return str(ipaddress.ip_network(data["IPAM"]["Config"][0]["Subnet"]))

    def write_inventory(self, lab_vars):
        for entry in (self.inventory.iterdir() if self.inventory.exists() else ()):
            if entry.name != "files":  # the site's files (site_certificate) stay
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        self.inventory.mkdir(parents=True, exist_ok=True)
        hosts = json.loads(json.dumps(self.hosts_yml))
        for spec in hosts["all"]["children"].values():
            for host in list((spec or {}).get("hosts") or {}):
                address = dict(spec["hosts"][host] or {})
                address.update({"ansible_host": self.container(host), "ansible_connection": "community.docker.docker",
                                "ansible_python_interpreter": "/usr/bin/python3"})
                spec["hosts"][host] = address
        hosts["all"].setdefault("vars", {}).pop("ansible_user", None)
        (self.inventory / "hosts.yml").write_text(json.dumps(hosts, indent=2) + "\n")
        (self.inventory / "group_vars").symlink_to(self.source / "group_vars")
        variables = dict(self.secrets)
        variables.update(lab_vars)
        (self.dir / "lab-vars.json").write_text(json.dumps(variables, indent=2) + "\n")

    def site_certificate(self, name):
        """A self-signed certificate at ``files/<name>.pem`` beside the inventory (where the example looks for the
        site's own); returns its private key (PEM), which the example takes from the vault."""
        files = self.inventory / "files"
        files.mkdir(parents=True, exist_ok=True)
        key = self.dir / ("%s.key" % name)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
                        "/CN=%s" % name, "-addext", "subjectAltName=DNS:%s,DNS:*.%s" % (name, name),
                        "-keyout", str(key), "-out", str(files / ("%s.pem" % name))],
                       capture_output=True, check=True)
        return key.read_text()

    def time_vars(self, reference):
        """``reference`` (an inventory host) serves local time; every other host takes it as its only NTP server."""
        is_reference = "inventory_hostname == %s" % json.dumps(reference)
        return {
            "node_base_ntp_servers": "{{ [] if %s else [%s] }}" % (is_reference, json.dumps(reference)),
            "node_base_ntp_pools": [],
            "node_base_ntp_local_stratum": "{{ 10 if %s else 0 }}" % is_reference,
            "node_base_ntp_allow": "{{ ['all'] if %s else [] }}" % is_reference,
        }

    def package_vars(self, versions):
        """The lab's package server as the vendor's site, with the real checksums of the files it serves."""
        base = "http://%s" % self.lab.container_name("pkgs")
        variables = {}
        for product, version in versions.items():
            package = PRODUCT_PACKAGES[product]
            variables["%s_version" % product] = version
            variables["%s_package_url" % product] = "%s/%s" % (base, deb_name(package, version))
            variables["%s_package_checksum" % product] = sha256(DEBS_DIR / deb_name(package, version))
        return variables

    # -- playbooks --------------------------------------------------------------------------------------------
    def playbook(self, name, extra_vars=None, verbosity=0, log=None, timeout=2400):
        path = pathlib.Path(name) if pathlib.Path(name).is_absolute() else REPO / "playbooks" / name
        args = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(path),
                "-e", "@%s" % (self.dir / "lab-vars.json")]
        if extra_vars:
            args += ["-e", json.dumps(extra_vars)]
        if verbosity:
            args.append("-" + "v" * verbosity)
        env = dict(os.environ)
        env.update({"ANSIBLE_COLLECTIONS_PATH": str(ensure_collection_link()), "POSITOPS_LAB": self.lab.prefix,
                    "ANSIBLE_NOCOLOR": "true", "ANSIBLE_FORCE_COLOR": "false", "ANSIBLE_HOST_KEY_CHECKING": "false",
                    "ANSIBLE_PIPELINING": "true", "ANSIBLE_RETRY_FILES_ENABLED": "false",
                    "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", ""))})
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO, check=False)
        result = PlaybookResult(proc, time.monotonic() - started)
        (self.dir / (log or path.name.replace(".yml", ".log"))).write_text(result.output)
        return result

    def require(self, result, what):
        if result.rc != 0:
            raise LabError("%s failed (rc=%s) in the %s example lab, log in %s:\n%s" % (
                what, result.rc, self.example, self.dir, result.output[-6000:]))
        return result
