"""A threaded HTTP server with a tiny router and an in-flight request counter (for graceful offline mode).

    server = HttpServer(("0.0.0.0", 4242), log, backlog=SOMAXCONN)
    server.route("GET", "/__ping__", lambda request: Response(200, "OK\\n"))
    server.route("GET", "/data/", handler, prefix=True)      # handler(request) -> Response
    server.start()                                            # serves in a background thread
    server.wait_idle(timeout=30)                              # waits for in-flight requests to end
    server.stop()

``Request`` has ``method``, ``path`` (no query), ``query`` (dict of first values), ``headers``, ``body`` (bytes),
``client`` (address). A handler raising an exception gives a 500 with the error logged; a client hanging up
before reading its answer is not logged.

The listen backlog is the real server's, not socketserver's 5: connections beyond it get no answer for seconds
(the kernel drops their SYN), so a burst (a load balancer letting held requests go) must meet the queue the product
really has. ``SOMAXCONN`` is what a Go server listens with (``net.core.somaxconn``, read as Go's net package does);
``NGINX_BACKLOG`` is nginx's default ``listen ... backlog`` on Linux (511).
"""

import http.server
import socketserver
import sys
import threading
import time
import urllib.parse

NGINX_BACKLOG = 511
SOMAXCONN = "somaxconn"


def listen_backlog(backlog):
    """The backlog to listen with: a number, or SOMAXCONN for the kernel's net.core.somaxconn (4096 on current
    kernels; 128 when the file cannot be read, Linux's SOMAXCONN before 5.4)."""
    if backlog != SOMAXCONN:
        return int(backlog)
    try:
        with open("/proc/sys/net/core/somaxconn", encoding="ascii") as handle:
            return min(int(handle.read().split()[0]), 65535)
    except (OSError, ValueError, IndexError):
        return 128


class Response:
    def __init__(self, status=200, body=b"", content_type="text/plain; charset=utf-8", headers=None):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.headers = dict(headers or {})
        self.headers.setdefault("Content-Type", content_type)


class Request:
    def __init__(self, method, raw_path, headers, body, client):
        parsed = urllib.parse.urlsplit(raw_path)
        self.method = method
        self.path = urllib.parse.unquote(parsed.path)
        self.query = {key: values[0] for key, values in urllib.parse.parse_qs(parsed.query).items()}
        self.headers = headers
        self.body = body
        self.client = client


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, backlog):
        self.request_queue_size = backlog  # read by server_activate()'s listen(), inside the base __init__
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        # A client that hangs up before reading the answer (HAProxy closes its health checks this way) is routine
        # for a server; only anything else deserves socketserver's traceback in the journal.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class HttpServer:
    def __init__(self, address, log, server_header="positemu", backlog=SOMAXCONN):
        self.log = log
        self.routes = []
        self._in_flight = 0
        self._cond = threading.Condition()
        self._thread = None
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = server_header

            def log_message(self, fmt, *args):  # access logs would flood the journal
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, self.headers, body, self.client_address)
                response = owner.dispatch(request)
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self._server = _ThreadingServer(address, Handler, listen_backlog(backlog))

    @property
    def port(self):
        return self._server.server_address[1]

    def route(self, method, path, handler, prefix=False):
        self.routes.append((method, path, prefix, handler))

    def dispatch(self, request):
        with self._cond:
            self._in_flight += 1
        try:
            method = "GET" if request.method == "HEAD" else request.method
            for route_method, path, prefix, handler in self.routes:
                if route_method == method and (request.path == path or (prefix and request.path.startswith(path))):
                    try:
                        return handler(request)
                    except Exception as error:  # a broken handler must not kill the server thread
                        self.log.exception("Error serving %s %s: %s", request.method, request.path, error)
                        return Response(500, "Internal Server Error: %s\n" % error)
            return Response(404, "Not Found\n")
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def in_flight(self):
        with self._cond:
            return self._in_flight

    def wait_idle(self, timeout, ignore=0):
        """Wait until at most ``ignore`` requests are in flight (the caller's own); True when idle in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight > ignore:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread is not None:  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()
