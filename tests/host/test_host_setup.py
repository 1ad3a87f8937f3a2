"""scripts/lib/host.sh decides by what works: a Docker client binary without a daemon must not pass for Docker.

Each case runs the shell functions with a PATH of stubs only (a `docker` client whose `info` answers when a daemon
runs, an optional `dockerd`, an `apt-get` that records what it was asked and installs a stub `dockerd`), so the
host's own Docker never takes part.
"""

import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
HOST_LIB = REPO / "scripts" / "lib" / "host.sh"
TOOLS = ("bash", "cat", "nohup", "seq", "sleep", "touch", "python3", "chmod")

DOCKER_CLIENT = """#!/bin/bash
# A client only: `docker info` answers once a daemon runs (the stub dockerd leaves a marker).
[ "$1" = info ] && [ -e "$STATE/daemon-up" ] && { echo 'Server Version: stub'; exit 0; }
echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2
exit 1
"""
DOCKERD = """#!/bin/bash
touch "$STATE/daemon-up"
"""
APT_GET = """#!/bin/bash
echo "$*" >> "$STATE/apt.log"
case " $* " in *" docker.io "*) printf '%s' "$DOCKERD_STUB" > "$BIN/dockerd"; chmod +x "$BIN/dockerd" ;; esac
exit 0
"""


@pytest.fixture
def host(tmp_path):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    stubs = {"docker": DOCKER_CLIENT, "apt-get": APT_GET}
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)

    def run(script):
        env = {"PATH": str(bin_dir), "STATE": str(state), "BIN": str(bin_dir), "DOCKERD_STUB": DOCKERD,
               "DOCKERD_LOG": str(state / "dockerd.log"), "HOME": str(tmp_path)}
        return subprocess.run([str(bin_dir / "bash"), "-c", ". %s; %s" % (HOST_LIB, script)], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    run.bin, run.state = bin_dir, state
    return run


def test_a_client_without_a_daemon_gets_docker_io_installed_and_the_daemon_started(host):
    listed = host("host_missing_packages")
    assert "docker.io" in listed.stdout.split(), listed
    setup = host('mapfile -t m < <(host_missing_packages); host_install_packages "${m[@]}" '
                 "&& host_ensure_docker_daemon 5 && docker info")
    assert setup.returncode == 0, setup
    assert "docker.io" in (host.state / "apt.log").read_text().split()
    assert "Server Version" in setup.stdout


def test_a_daemon_that_answers_needs_nothing_installed(host):
    (host.state / "daemon-up").touch()
    assert "docker.io" not in host("host_missing_packages").stdout.split()
    assert host("host_ensure_docker_daemon 1").returncode == 0
    assert not (host.state / "apt.log").exists()


def test_an_installed_daemon_that_is_not_running_is_started_not_reinstalled(host):
    (host.bin / "dockerd").write_text(DOCKERD)
    (host.bin / "dockerd").chmod(0o755)
    assert "docker.io" not in host("host_missing_packages").stdout.split()
    started = host("host_ensure_docker_daemon 5")
    assert started.returncode == 0, started
    assert (host.state / "daemon-up").exists()


def test_without_dockerd_the_daemon_step_fails_with_a_fix_that_works(host):
    failed = host("host_ensure_docker_daemon 1")
    assert failed.returncode == 1
    assert "Fix: apt-get install -y docker.io" in failed.stderr
    # Following the fix (the stub apt-get installs dockerd as the real package does) makes the step pass.
    fixed = host("apt-get install -y docker.io && host_ensure_docker_daemon 5")
    assert fixed.returncode == 0, fixed


def test_a_daemon_that_never_answers_fails_naming_its_log(host):
    (host.bin / "dockerd").write_text("#!/bin/bash\nexit 1\n")
    (host.bin / "dockerd").chmod(0o755)
    failed = host("host_ensure_docker_daemon 2")
    assert failed.returncode == 1
    assert "dockerd did not answer within 2s: see %s" % (host.state / "dockerd.log") in failed.stderr


def test_setup_uses_the_shared_host_steps():
    setup = (REPO / "scripts" / "setup").read_text()
    assert ". scripts/lib/host.sh" in setup and "host_ensure_docker_daemon" in setup
    assert "command -v docker " not in setup, "setup must not decide by the client binary's name"
