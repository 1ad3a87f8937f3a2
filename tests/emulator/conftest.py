"""Local emulator tests (no Docker): the .debs are built and unpacked into a temporary directory, and their
binaries run as plain processes on loopback with SQLite in tmp dirs (helpers in emulator_harness.py)."""

import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
SRC = HERE / "src"
for path in (SRC, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory):
    """{(package, version): root dir of the unpacked .deb} for every package build.sh makes."""
    out = tmp_path_factory.mktemp("debs")
    subprocess.run(["bash", str(HERE / "build.sh"), str(out)], check=True, stdout=subprocess.DEVNULL)
    roots = {}
    for deb in sorted(out.glob("*.deb")):
        fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], capture_output=True,
                                text=True, check=True).stdout.split("\n")
        package = fields[0].split(": ", 1)[1]
        version = fields[1].split(": ", 1)[1]
        root = tmp_path_factory.mktemp("%s-%s" % (package, version.replace("+", "_")))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        roots[(package, version)] = root
    return roots


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def postgres():
    """A loopback PostgreSQL server (initdb in a temporary directory) for the tests of one module."""
    from workbench_harness import LocalPostgres

    # Not under pytest's tmp dir: that is private to root and the postgres user must reach its data directory.
    base = tempfile.mkdtemp(prefix="positemu-pg-")
    server = LocalPostgres(base).start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)
