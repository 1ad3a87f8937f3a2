"""Build the lab's node image: Debian bookworm with systemd, made with debootstrap and `docker import`.

No container registry is reachable here, so the image is built from Debian packages. The tag carries a hash of
everything that shapes the image, so a second run finds it cached and returns at once.

    python -m tests.lab.image            # build when missing, print the tag
    python -m tests.lab.image --print    # print the tag only
"""

import argparse
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = REPO / "build"

# What a fresh Debian 12 cloud VM has, and no more: systemd, python3 (Ansible's interpreter), sudo, CA
# certificates and the base tools. Everything a role, module or playbook needs (chrony, HAProxy, PostgreSQL,
# psycopg, sqlite3, python3-apt, acl, ...) the collection installs itself, through the lab's package cache
# (tests/lab/aptcache.py); tests/lab/test_image.py keeps it that way.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "ca-certificates", "iproute2", "procps", "adduser", "sudo",
    "openssl", "netbase", "less",
)
# Units that cannot work in an unprivileged container and only slow the boot down.
UNITS_MASKED = (
    "systemd-udevd.service", "systemd-udev-trigger.service", "getty.target", "console-getty.service",
    "systemd-logind.service", "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer",
    "e2scrub_reap.service", "systemd-remount-fs.service",
)
SUITE = "bookworm"
IMAGE_REPO = "positops-lab/node"


def image_tag():
    recipe = repr((PACKAGES, UNITS_MASKED, SUITE, _customize_script()))
    return "%s:%s" % (IMAGE_REPO, hashlib.sha256(recipe.encode()).hexdigest()[:12])


def debian_mirror():
    """The mirror this machine's apt uses, read at run time (never written into the repository)."""
    deb822 = pathlib.Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.exists():
        for stanza in deb822.read_text().split("\n\n"):
            if re.search(r"^Suites:.*\b%s\b" % SUITE, stanza, re.M) and "security" not in stanza:
                match = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if match:
                    return match.group(1)
    legacy = pathlib.Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and fields[2] == SUITE:
                return fields[1]
    raise SystemExit("no Debian %s mirror found in /etc/apt/sources.list.d/debian.sources or "
                     "/etc/apt/sources.list: configure apt first" % SUITE)


def _customize_script():
    return "\n".join([
        "set -e",
        "systemctl mask %s >/dev/null 2>&1" % " ".join(UNITS_MASKED),
        # Each container gets its own machine id at boot.
        ": > /etc/machine-id",
        "rm -f /var/lib/dbus/machine-id",
        "apt-get clean",
        "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin",
    ])


def image_exists(tag):
    return subprocess.run(["docker", "image", "inspect", tag], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def build(force=False, log=sys.stderr):
    tag = image_tag()
    BUILD_DIR.mkdir(exist_ok=True)
    # Teammates and parallel test sessions may ask at once: one builds, the others wait and reuse it.
    with open(BUILD_DIR / "image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(tag) and not force:
            return tag
        rootfs = pathlib.Path(tempfile.mkdtemp(prefix="rootfs-", dir=BUILD_DIR))
        # mkdtemp makes 0700; this directory becomes the image's "/", which every user must traverse.
        rootfs.chmod(0o755)
        try:
            print("building %s with debootstrap (about two minutes)" % tag, file=log)
            subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE,
                            str(rootfs), debian_mirror()], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["chroot", str(rootfs), "/bin/bash", "-c", _customize_script()], check=True)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run(["docker", "import", "-c", 'CMD ["/lib/systemd/systemd"]', "-", tag],
                           stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
            if tar.wait() != 0:
                raise SystemExit("tar of the image root failed")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
        return tag


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print the tag without building")
    parser.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    args = parser.parse_args(argv)
    print(image_tag() if args.print else build(force=args.force))


if __name__ == "__main__":
    if os.geteuid() != 0 and "--print" not in sys.argv:
        raise SystemExit("building the image needs root (debootstrap, chroot)")
    main()
