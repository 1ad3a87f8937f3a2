"""The lab's package cache: one apt-cacher-ng container per host, shared by every lab, its cache on a volume.

Lab nodes start bare (tests/lab/image.py): whatever a role needs, the role installs with apt from the Debian mirror
that the node's own sources.list names. The nodes only get an HTTP proxy setting, as machines behind a company's
proxy do; apt-cacher-ng answers from its cache after the first download, so a second lab installs in seconds and a
CI run downloads each package once. Nothing is pre-installed and the roles' own install steps always run.

    cache = AptCache().ensure()          # start the cache when it is not running (first time: installs it)
    cache.attach("it-upg-net")           # reachable as http://aptcache:3142 on that lab network
    cache.detach("it-upg-net")           # before the network is removed
    python -m tests.lab.aptcache         # start it by hand; prints its state
"""

import fcntl
import time

from tests.lab import image
from tests.lab.docker_cli import LabError, docker

NAME = "positops-aptcache"
VOLUME = "positops-aptcache"
LABEL = "positops.shared=aptcache"
ALIAS = "aptcache"
PORT = 3142
# What nodes are told (/etc/apt/apt.conf.d): every HTTP download goes through the cache. HTTPS sources (a vendor
# repository, say) are not proxied: apt-cacher-ng cannot cache TLS, and the lab has none.
PROXY_FILE = "/etc/apt/apt.conf.d/01positops-lab-proxy"
PROXY_CONF = 'Acquire::http::Proxy "http://%s:%d";\n' % (ALIAS, PORT)
SYSTEMD_RUN_OPTS = ("--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro")


class AptCache:
    def __init__(self, name=NAME):
        self.name = name

    def _exec(self, command, check=True, timeout=300):
        proc = docker("exec", self.name, "bash", "-c", command, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise LabError("%s: `%s` failed (rc=%s): %s%s" % (self.name, command, proc.returncode, proc.stdout,
                                                                proc.stderr))
        return proc

    def running(self):
        proc = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def answers(self):
        """apt-cacher-ng serves its report page (the installed, running cache)."""
        probe = ("python3 -c \"import urllib.request; "
                 "urllib.request.urlopen('http://127.0.0.1:%d/acng-report.html', timeout=3)\"" % PORT)
        return self._exec(probe, check=False).returncode == 0

    def ensure(self, timeout=300):
        """Start the cache when it is not running; install apt-cacher-ng in it the first time. Returns self."""
        image.BUILD_DIR.mkdir(exist_ok=True)
        # Parallel test sessions may ask at once: one starts it, the others find it running.
        with open(image.BUILD_DIR / "aptcache.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.running() and self.answers():
                return self
            if not self.running():
                docker("rm", "-f", self.name, check=False)
                docker("volume", "create", "--label", LABEL, VOLUME)
                docker("run", "-d", "--name", self.name, "--hostname", ALIAS, "--label", LABEL,
                       *SYSTEMD_RUN_OPTS, "-v", "%s:/var/cache/apt-cacher-ng" % VOLUME, image.build())
                self._wait_for_systemd()
            if self._exec("command -v apt-cacher-ng", check=False).returncode != 0:
                # The cache itself comes straight from the mirror the image was built from. Its postinst must not
                # start it yet (policy-rc.d): the volume holding the cache still belongs to root.
                self._exec("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d"
                           " && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                           "apt-cacher-ng >/dev/null && rm /usr/sbin/policy-rc.d && "
                           "chown -R apt-cacher-ng: /var/cache/apt-cacher-ng && "
                           "systemctl enable apt-cacher-ng >/dev/null 2>&1 && systemctl restart apt-cacher-ng",
                           timeout=timeout)
            deadline = time.monotonic() + 60
            while not self.answers():
                if time.monotonic() > deadline:
                    raise LabError("%s: apt-cacher-ng does not answer on port %d; see `docker exec %s journalctl "
                                   "-u apt-cacher-ng`" % (self.name, PORT, self.name))
                time.sleep(0.5)
        return self

    def _wait_for_systemd(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._exec("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise LabError("%s: systemd did not finish booting in %ss" % (self.name, timeout))

    def attach(self, network):
        """Make the cache reachable as ``aptcache`` on a lab network (idempotent)."""
        attached = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", self.name).stdout
        if '"%s"' % network not in attached:
            docker("network", "connect", "--alias", ALIAS, network, self.name)

    def detach(self, network):
        docker("network", "disconnect", "-f", network, self.name, check=False)


def main():
    cache = AptCache().ensure()
    print("%s running, answering on port %d; cache volume %s" % (cache.name, PORT, VOLUME))


if __name__ == "__main__":
    main()
