"""`/usr/lib/rstudio-server/bin/locktester`: checks which file locks work on the storage the nodes share.

Run it from a directory on the shared storage on two nodes. The first run takes both lock kinds and holds them
until interrupted; a later run reports which kinds it could not take — those are the kinds the filesystem supports
(when both runs get a lock, that kind does not work across nodes). Lock files live in the current directory
(**assumption**: the docs do not say where).
"""

import fcntl
import os
import signal
import socket
import sys

ADVISORY_FILE = ".rstudio-locktester-advisory"
LINK_TARGET = ".rstudio-locktester-link"


def take_advisory(directory):
    handle = open(os.path.join(directory, ADVISORY_FILE), "a+")
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def take_link(directory):
    """A link-based lock: hard-link a private file to the shared lock name; the link succeeds for one holder."""
    private = os.path.join(directory, ".rstudio-locktester-%s-%d" % (socket.gethostname(), os.getpid()))
    with open(private, "w", encoding="utf-8") as handle:
        handle.write("%s %d\n" % (socket.gethostname(), os.getpid()))
    try:
        os.link(private, os.path.join(directory, LINK_TARGET))
        return private
    except FileExistsError:
        os.unlink(private)
        return None


def release(directory, advisory, link):
    if advisory is not None:
        advisory.close()
    if link is not None:
        for path in (os.path.join(directory, LINK_TARGET), link):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def main(argv=None, directory=None, wait=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv:
        sys.stderr.write("Usage: locktester (no arguments; run it in a directory on the shared storage)\n")
        return 1
    directory = directory or os.getcwd()
    if not os.access(directory, os.W_OK):
        sys.stderr.write("locktester: cannot write to %s: run it in a writable directory on the shared storage\n"
                         % directory)
        return 1
    advisory = take_advisory(directory)
    link = take_link(directory)
    print("* %s advisory lock" % ("Acquired" if advisory else "Unable to acquire"))
    print("* %s link-based lock" % ("Acquired" if link else "Unable to acquire"))
    sys.stdout.flush()
    if advisory and link:
        # First holder: keep the locks until interrupted so another node can try.
        print("\nHolding the locks; press Ctrl+C to release them.")
        sys.stdout.flush()
        try:
            (wait or _wait_for_signal)()
        finally:
            release(directory, advisory, link)
        return 0
    supported = [name for name, held in (("advisory", advisory), ("link-based", link)) if not held]
    release(directory, advisory, link)
    print("\nYour filesystem appears to support %s locks." % " and ".join(supported))
    return 0


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def _wait_for_signal():
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
