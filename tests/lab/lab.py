"""Run lab containers: systemd nodes, a package server, PostgreSQL and HAProxy, on one Docker network.

Every object carries the lab's prefix (``$POSITOPS_LAB``, default ``positops``) in its name and the label
``positops.lab=<prefix>``, so several labs can run side by side and ``Lab.destroy()`` removes exactly one of them.

    lab = Lab("it")
    pkgs = lab.start_package_server()             # serves build/debs/ at http://it-pkgs/
    db = lab.start_postgres()                      # PostgreSQL 15, reachable as it-db:5432
    url = lab.create_database("rspm", "rspm", "secret")
    node = lab.start_node("pm1", volumes={lab.volume("shared"): "/srv/shared"})
    node.install_package(pkgs, "rstudio-pm_2023.12.0-13_amd64.deb")
    node.exec("systemctl is-active rstudio-pm")
    lab.destroy()
"""

import json
import os
import pathlib
import shlex
import subprocess
import time

from tests.lab import aptcache, image, probe
from tests.lab.docker_cli import LabError, docker  # noqa: F401  (LabError is part of this module's API)

REPO = image.REPO
DEBS_DIR = REPO / "build" / "debs"
SYSTEMD_RUN_OPTS = ("--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro")


def wait_for(predicate, timeout, what, interval=0.3):
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def build_debs(dest=DEBS_DIR):
    """Build the emulator's .deb packages (seconds) into ``dest`` and return the file names."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(REPO / "tests" / "emulator" / "build.sh"), str(dest)], check=True,
                   stdout=subprocess.DEVNULL)
    return sorted(p.name for p in dest.glob("*.deb"))


def deb_file(package, version):
    """The file name the vendor uses for a package version (Workbench joins with dashes)."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if package == "rstudio-workbench":
        return "%s-%s-%s.deb" % (package, version, arch)
    return "%s_%s_%s.deb" % (package, version, arch)


# A download with the node's python3 (bare nodes have no curl): URL and destination path.
DOWNLOAD_SCRIPT = "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])"


class Node:
    """One container of the lab. ``name`` is the short name, also its host name and DNS alias."""

    def __init__(self, lab, name):
        self.lab = lab
        self.name = name
        self.container = lab.container_name(name)

    def exec(self, command, check=True, user=None, env=None, timeout=300, input=None):
        """Run a shell command in the container; return the CompletedProcess (text)."""
        args = ["exec", "-i"]
        if user:
            args += ["-u", user]
        for key, value in (env or {}).items():
            args += ["-e", "%s=%s" % (key, value)]
        args += [self.container, "bash", "-c", command]
        proc = docker(*args, check=False, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise LabError("%s: `%s` failed (rc=%s)\nstdout: %s\nstderr: %s" % (
                self.name, command, proc.returncode, proc.stdout.strip(), proc.stderr.strip()))
        return proc

    def output(self, command, **kwargs):
        return self.exec(command, **kwargs).stdout.strip()

    def published(self, port):
        """The 127.0.0.1 port the container's ``port`` is published on (Lab.start_node's ``publish``)."""
        mapping = docker("port", self.container, "%d/tcp" % port).stdout.split()
        if not mapping:
            raise LabError("%s: port %d is not published" % (self.name, port))
        return int(mapping[0].rsplit(":", 1)[1])

    def ip(self):
        data = json.loads(docker("inspect", self.container).stdout)[0]
        return data["NetworkSettings"]["Networks"][self.lab.network]["IPAddress"]

    def write_file(self, path, content, mode="0644"):
        self.exec("mkdir -p %s && cat > %s && chmod %s %s" % (
            shlex.quote(str(pathlib.PurePosixPath(path).parent)), shlex.quote(path), mode, shlex.quote(path)),
            input=content)

    def read_file(self, path):
        return self.exec("cat %s" % shlex.quote(path)).stdout

    def wait_for_systemd(self, timeout=240):
        """Wait until systemd has finished booting (running or degraded)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.exec("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        raise LabError("%s: systemd did not finish booting in %ss (state %r)" % (self.name, timeout, state))

    def apt_install(self, *packages):
        """Install Debian packages on a lab service node (database, load balancer) through the package cache."""
        self.exec("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq %s >/dev/null"
                  % " ".join(shlex.quote(package) for package in packages), timeout=600)

    def http(self, url, method="GET", data=None, timeout=5, headers=None):
        """``(status, headers, body)`` of an HTTP request made on this node (status 0: no answer)."""
        return probe.request(lambda command, input: self.exec(command, check=False, input=input), url, method,
                             data, timeout, headers)

    def http_ok(self, url, method="GET", data=None, timeout=5, headers=None):
        """The body of a request that must answer 2xx (a LabError names the status and body otherwise)."""
        status, _, body = self.http(url, method, data, timeout, headers)
        if not 200 <= status < 300:
            raise LabError("%s: %s %s answered %s: %s" % (self.name, method, url, status, body[:500]))
        return body

    def wait_http(self, url, timeout=60, status=200, interval=0.5):
        """Poll a URL on this node until it answers ``status``; return the body."""
        deadline = time.monotonic() + timeout
        while True:
            got, _, body = self.http(url, timeout=3)
            if got == status:
                return body
            if time.monotonic() >= deadline:
                raise LabError("%s: %s did not answer %s in %ss (last: %s %s)" % (
                    self.name, url, status, timeout, got, body[:300]))
            time.sleep(interval)

    def install_package(self, package_server, file_name, apt_options=""):
        """Download a .deb from the package server and install it the way an operator does."""
        url = "http://%s/%s" % (package_server.name, file_name)
        self.exec("python3 -c %s %s /tmp/%s && cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y -q %s ./%s"
                  % (shlex.quote(DOWNLOAD_SCRIPT), shlex.quote(url), shlex.quote(file_name), apt_options,
                     shlex.quote(file_name)))

    def workbench_nodes(self):
        """``rstudio-server list-nodes`` as rows ``{column title: value}``: the table after the Cluster section,
        cut at the header's column starts (the emulator prints Workbench's fixed-width layout)."""
        lines = self.output("rstudio-server list-nodes").splitlines()
        lines = lines[[number for number, line in enumerate(lines) if line.startswith("ID ")][0]:]
        titles = [title for title in ("ID", "Host", "IPv4", "Port", "Status", "Health", "Last Seen")
                  if title in lines[0]]
        starts = [lines[0].index(title) for title in titles]
        ends = starts[1:] + [None]
        return [{title: line[start:end].strip() for title, start, end in zip(titles, starts, ends)}
                for line in lines[1:] if line.strip()]

    def workbench_statuses(self):
        """``{host: status}`` of ``rstudio-server list-nodes``."""
        return {row["Host"]: row["Status"] for row in self.workbench_nodes()}

    def journal(self, unit, lines=200):
        """The unit's last ``lines`` journal lines (all of them with ``lines=None``)."""
        count = "" if lines is None else " -n %d" % lines
        return self.output("journalctl -u %s --no-pager%s -o cat" % (shlex.quote(unit), count), check=False)

    def wait_until(self, command, timeout=60, interval=0.5):
        """Poll a shell command in the container until it succeeds; return its stdout."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = self.exec(command, check=False)
            if last.returncode == 0:
                return last.stdout
            if time.monotonic() >= deadline:
                raise LabError("%s: `%s` did not succeed in %ss; last rc=%s stdout=%s stderr=%s" % (
                    self.name, command, timeout, last.returncode, last.stdout.strip(), last.stderr.strip()))
            time.sleep(interval)

    def wait_inside(self, condition, timeout, what, unless=lambda: False, interval=0.2):
        """Wait until the shell ``condition`` succeeds in the container, or ``unless()`` is true; return whether the
        condition held. One ``docker exec`` polls there every ``interval`` s: an exec per poll costs the host ~70 ms
        of CPU, a quarter of a core for minutes at the 0.3 s a fault test needs to catch its moment."""
        marker = "positops-wait-%d-%d" % (os.getpid(), time.monotonic_ns())
        script = ": %s; until %s; do sleep %s; done" % (marker, condition, interval)
        args = ["docker", "exec", self.container, "timeout", str(int(timeout) + 5), "bash", "-c", script]
        watcher = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while watcher.poll() is None:
                if unless():
                    return False
                if time.monotonic() > deadline:
                    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
                time.sleep(0.1)
            if watcher.returncode != 0:
                raise LabError("%s: waiting for %s ended with rc=%s" % (self.name, what, watcher.returncode))
            return True
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
                # Killing the docker client leaves the loop running in the container.
                self.exec("pkill -f %s" % shlex.quote(marker), check=False)

    def stop(self):
        docker("stop", "-t", "5", self.container)

    def kill(self):
        docker("kill", self.container)

    def start(self):
        docker("start", self.container)

    def is_running(self):
        proc = docker("inspect", "-f", "{{.State.Running}}", self.container, check=False)
        return proc.stdout.strip() == "true"


class Lab:
    def __init__(self, prefix=None):
        self.prefix = prefix or os.environ.get("POSITOPS_LAB", "positops")
        self.network = "%s-net" % self.prefix
        self.label = "positops.lab=%s" % self.prefix

    def container_name(self, name):
        return "%s-%s" % (self.prefix, name)

    def volume(self, name):
        """A named volume of this lab (created on first use by Docker)."""
        return "%s-%s" % (self.prefix, name)

    def node(self, name):
        return Node(self, name)

    def ensure_network(self):
        if docker("network", "inspect", self.network, check=False).returncode != 0:
            docker("network", "create", "--label", self.label, self.network)
        # Bare nodes install what the roles need through the shared package cache (tests/lab/aptcache.py).
        aptcache.AptCache().ensure().attach(self.network)

    def start_node(self, name, volumes=None, env=None, image_tag=None, command=None, boot=True, publish=(),
                   sysctls=None):
        """Start a systemd container (or ``command`` instead of systemd) named ``<prefix>-<name>``, its apt
        pointed at the lab's package cache; each port of ``publish`` is published on 127.0.0.1 (a free port,
        see Node.published), where the host's probes reach it; ``sysctls``: the container's namespaced sysctls."""
        self.ensure_network()
        node = Node(self, name)
        docker("rm", "-f", "-v", node.container, check=False)
        args = ["run", "-d", "--name", node.container, "--hostname", name, "--network", self.network,
                "--network-alias", name, "--label", self.label]
        if command is None:
            args += list(SYSTEMD_RUN_OPTS)
        for source, target in (volumes or {}).items():
            if not str(source).startswith("/"):
                docker("volume", "create", "--label", self.label, str(source))
            args += ["-v", "%s:%s" % (source, target)]
        for key, value in (env or {}).items():
            args += ["-e", "%s=%s" % (key, value)]
        for port in publish:
            args += ["-p", "127.0.0.1::%d" % port]
        for key, value in (sysctls or {}).items():
            args += ["--sysctl", "%s=%s" % (key, value)]
        args.append(image_tag or image.build())
        if command:
            args += list(command)
        docker(*args)
        if command is None:
            node.write_file(aptcache.PROXY_FILE, aptcache.PROXY_CONF)
            if boot:
                node.wait_for_systemd()
        return node

    def start_package_server(self, debs_dir=DEBS_DIR, name="pkgs"):
        """A plain HTTP server over the .deb directory, like the vendor's download site."""
        node = self.start_node(name, volumes={str(debs_dir): "/srv/packages:ro"},
                               command=["python3", "-m", "http.server", "80", "--directory", "/srv/packages"])
        node.wait_until("python3 -c \"import urllib.request; urllib.request.urlopen('http://localhost/')\"",
                        timeout=30)
        return node

    def start_postgres(self, name="db", superuser_password="lab-superuser"):
        """PostgreSQL 15 from Debian's package, listening on the lab network with password authentication."""
        node = self.start_node(name)
        node.apt_install("postgresql")
        node.exec(
            "set -e; conf=/etc/postgresql/15/main;"
            " echo \"listen_addresses = '*'\" >> $conf/postgresql.conf;"
            " echo 'host all all 0.0.0.0/0 scram-sha-256' >> $conf/pg_hba.conf;"
            # The package's postinst already started it, listening on localhost only: restart to read the above.
            " systemctl enable postgresql@15-main >/dev/null 2>&1; systemctl restart postgresql@15-main;"
            " for i in $(seq 60); do pg_isready -q && break; sleep 0.5; done; pg_isready")
        node.exec("psql -v ON_ERROR_STOP=1 -c \"ALTER ROLE postgres PASSWORD '%s'\"" % superuser_password,
                  user="postgres")
        self.postgres = node
        return node

    def create_database(self, name, owner, password, db_node=None):
        """Create a role and a database it owns; return its postgres:// URL as seen from the lab network."""
        db_node = db_node or self.postgres
        sql = ("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{o}') THEN "
               "CREATE ROLE \"{o}\" LOGIN PASSWORD '{p}'; END IF; END$$;").format(o=owner, p=password)
        db_node.exec("psql -v ON_ERROR_STOP=1 -c %s" % shlex.quote(sql), user="postgres")
        exists = db_node.output("psql -tAc \"SELECT 1 FROM pg_database WHERE datname = '%s'\"" % name,
                                user="postgres")
        if exists != "1":
            db_node.exec("createdb -O %s %s" % (shlex.quote(owner), shlex.quote(name)), user="postgres")
        return "postgres://%s:%s@%s:5432/%s?sslmode=disable" % (owner, password, db_node.name, name)

    def start_haproxy(self, config, name="lb"):
        """HAProxy from Debian's package with the given configuration, validated before start."""
        node = self.start_node(name)
        node.apt_install("haproxy")
        node.write_file("/etc/haproxy/haproxy.cfg", config)
        node.exec("haproxy -c -q -f /etc/haproxy/haproxy.cfg && systemctl enable --now haproxy >/dev/null 2>&1")
        return node

    def destroy(self):
        """Remove every container, network and volume of this lab."""
        ids = docker("ps", "-aq", "--filter", "label=" + self.label).stdout.split()
        if ids:
            docker("rm", "-f", "-v", *ids)
        aptcache.AptCache().detach(self.network)
        docker("network", "rm", self.network, check=False)
        volumes = docker("volume", "ls", "-q", "--filter", "label=" + self.label).stdout.split()
        if volumes:
            docker("volume", "rm", "-f", *volumes, check=False)
