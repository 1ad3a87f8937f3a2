"""Save HAProxy's server states for the next HAProxy process (installed by positops.ha.load_balancer).

haproxy.service runs it before every reload and stop (``python3 <this file> --socket S --config C --output F``, see
the role's systemd drop-in). It saves ``show servers state`` to the server-state file that the next process applies
at start (global ``server-state-file``, ``load-server-state-from-file global``), so drain, maintenance and health
states set through the runtime API survive a reload. HAProxy also applies the saved port over the configured one
(haproxy/haproxy#1412, #2103); the fix its maintainers give is to leave out the lines of servers whose configuration
changed. This script does that: a server is kept only when the configuration about to be loaded (--config) still
has it, in the same backend, on the same port. The file is replaced atomically; when HAProxy does not answer, the
old file stays and the script says so (the reload goes on).
"""

import argparse
import os
import re
import socket
import sys
import tempfile


def show_servers_state(path, timeout=10):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
        client.sendall(b"show servers state\n")
        with client.makefile("rb") as answer:  # read to the end: HAProxy closes the connection after answering
            return answer.read().decode("utf-8", "replace")


def configured_ports(config_path):
    """{(backend, server): port} of the `server NAME ADDRESS:PORT` lines of every backend or listen section."""
    ports = {}
    section = None
    with open(config_path, encoding="utf-8") as config:
        for line in config:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] in ("global", "defaults", "frontend", "backend", "listen", "userlist", "peers", "resolvers",
                            "cache", "program", "http-errors", "ring", "mailers"):
                section = words[1] if words[0] in ("backend", "listen") and len(words) > 1 else None
            elif section and words[0] == "server" and len(words) > 2:
                match = re.search(r":(\d+)$", words[2])
                ports[(section, words[1])] = match.group(1) if match else None
    return ports


def keep(state, ports):
    lines = state.splitlines()
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("# be_id"):
        raise ValueError("unexpected answer to 'show servers state': %r" % state[:200])
    header = lines[1][2:].split()
    kept, dropped = lines[:2], []
    for line in lines[2:]:
        if not line.strip() or line.startswith("#"):
            continue
        row = dict(zip(header, line.split()))
        key = (row.get("be_name"), row.get("srv_name"))
        if key in ports and (ports[key] is None or ports[key] == row.get("srv_port")):
            kept.append(line)
        else:
            dropped.append("%s/%s" % key)
    return "\n".join(kept) + "\n", dropped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    try:
        state = show_servers_state(args.socket)
    except OSError as error:
        print("positops: server states not saved, HAProxy does not answer on %s (%s); %s is left as it was"
              % (args.socket, error, args.output), file=sys.stderr)
        return 0
    try:
        content, dropped = keep(state, configured_ports(args.config))
    except (OSError, ValueError) as error:
        print("positops: server states not saved: %s" % error, file=sys.stderr)
        return 1
    directory = os.path.dirname(args.output) or "."
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".server-state.")
    with os.fdopen(handle, "w") as output:
        output.write(content)
    os.chmod(temporary, 0o644)
    os.replace(temporary, args.output)
    if dropped:
        print("positops: not kept (server gone or port changed in %s): %s" % (args.config, ", ".join(dropped)),
              file=sys.stderr)
    print("positops: %d server states saved to %s" % (content.count("\n") - 2, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
