"""HTTP requests made from inside a lab node with the node's own python3, as a client on that host would.

Bare nodes have no curl; the probe is this file's ``SCRIPT``, run with ``python3 -c``. It prints the status code on
the first line, then ``name: value`` header lines, a blank line and the body; status 0 means no answer (refused,
timed out), with the reason as the body.

    status, headers, body = probe.request(node.exec, "http://127.0.0.1:4242/__ping__")
"""

import shlex

SCRIPT = r"""
import sys, urllib.error, urllib.request
method, url, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = sys.stdin.buffer.read() if method in ("POST", "PUT", "PATCH") else None
req = urllib.request.Request(url, data=data, method=method)
for header in sys.argv[4:]:
    name, _, value = header.partition(":")
    req.add_header(name.strip(), value.strip())
class Keep(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
try:
    resp = urllib.request.build_opener(Keep).open(req, timeout=timeout)
    status, headers, body = resp.status, resp.headers.items(), resp.read()
except urllib.error.HTTPError as exc:
    status, headers, body = exc.code, exc.headers.items(), exc.read()
except Exception as exc:
    status, headers, body = 0, [], repr(exc).encode()
out = sys.stdout.buffer
out.write(b"%d\n" % status)
for name, value in headers:
    out.write(("%s: %s\n" % (name, value)).encode())
out.write(b"\n" + body)
"""


def command(url, method="GET", timeout=5, headers=None):
    """The shell command that makes the request (data, if any, goes to its standard input)."""
    args = [method, url, str(timeout)] + ["%s: %s" % item for item in (headers or {}).items()]
    return "python3 -c %s %s" % (shlex.quote(SCRIPT), " ".join(shlex.quote(arg) for arg in args))


def parse(output):
    """``(status, {header: value}, body)`` from the probe's output."""
    head, _, body = output.partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0]) if lines and lines[0].strip().isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def request(run, url, method="GET", data=None, timeout=5, headers=None):
    """Make the request with ``run(command, input=...)`` (a node's exec) and parse what came back."""
    proc = run(command(url, method, timeout, headers), input=data if data is not None else "")
    return parse(proc.stdout)
