"""Clients of a lab cluster that measure what users would see, from the host, through ports published on 127.0.0.1.

- ``Traffic``: a bounded constant-rate client through the load balancer; every request's start, duration and
  outcome are recorded (failed: no answer, 5xx, or wrong content), and the summary gives the failures, the slowest
  answer, the p99 latency and the windows in which no request succeeded.
- ``ServingWatcher``: polls every node's health endpoint; the longest window in which no node answered 200.
- ``LongRequest``: one request held open through the load balancer (a long download, an IDE tab): what a drain
  waits for, and what a deadline cuts. ``upload_seconds`` makes it a slow upload (a POST whose body trickles in),
  which holds a server session open on any product, without a slow route.

    traffic = Traffic(cluster.lb_url(), "/__api__/repos", check).start()
    ...                                   # the upgrade
    print(traffic.stop())                 # {"sent", "failed", "slowest_s", "p99_s", "windows", ...}
"""

import http.client
import ssl
import threading
import time
import urllib.parse


def _connection(url, timeout):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        # The lab's certificate is self-signed: the probe measures availability, not the chain.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def request(url, path, method="GET", timeout=5.0, headers=None):
    """``(status, body bytes)`` of one request on a new connection; status 0 when nothing answered, with the
    error's class name as the body (``TimeoutError``, ``ConnectionResetError``, ``RemoteDisconnected``...)."""
    connection = _connection(url, timeout)
    try:
        connection.request(method, path, headers=dict({"Connection": "close"}, **(headers or {})))
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return 0, type(error).__name__.encode()
    finally:
        connection.close()


def _coarse(seconds):
    """Seconds rounded to a bucket (<1, <5, <30, <60, else the ten below) so that failures group by cause."""
    for bound in (1, 5, 30, 60):
        if seconds < bound:
            return "<%d" % bound
    return ">=%d" % (int(seconds) // 10 * 10)


class _Loop:
    """A bounded background loop: ``tick()`` every ``interval`` seconds until ``stop()`` or ``max_seconds``."""

    def __init__(self, interval, max_seconds):
        self.interval = interval
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        started = time.monotonic()
        next_at = started
        while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
            self.tick()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()

    def halt(self):
        self._stop.set()
        self._thread.join()

    def tick(self):
        raise NotImplementedError


class Traffic(_Loop):
    """``check(status, body)`` says whether an answer is right. One new connection per request, so a drained
    server gets no new work. ``timeout`` bounds one request (longer than the load balancer's hold)."""

    def __init__(self, url, path, check, rate=20.0, timeout=90.0, max_seconds=1800, method="GET"):
        super().__init__(1.0 / rate, max_seconds)
        self.url, self.path, self.check, self.timeout, self.method = url, path, check, timeout, method
        self.records = []  # (monotonic start, seconds, ok, reason)
        self._pending = []

    def tick(self):
        # Each request in its own thread: a held request must not stop the constant rate.
        worker = threading.Thread(target=self._one, args=(time.monotonic(),), daemon=True)
        worker.start()
        self._pending.append(worker)

    def _one(self, started):
        status, body = request(self.url, self.path, self.method, self.timeout)
        seconds = time.monotonic() - started
        if status == 0:
            # What the client saw and after how long: a timeout and a reset have different causes.
            ok, reason = False, "no answer (%s after %s s)" % (body.decode(), _coarse(seconds))
        elif status >= 500:
            # The body's first line tells the hold's own answer from HAProxy's or a node's.
            gist = body.decode(errors="replace").strip().split("\n", 1)[0][:100]
            ok, reason = False, "http %d%s" % (status, " (%s)" % gist if gist else "")
        elif not self.check(status, body):
            ok, reason = False, "wrong content (http %d)" % status
        else:
            ok, reason = True, "ok"
        self.records.append((started, seconds, ok, reason))

    def stop(self):
        self.halt()
        for worker in self._pending:
            worker.join(self.timeout + 5)
        return self.summary()

    def summary(self):
        """Requests, failures by reason, the slowest answer, p99, and the windows in which no request succeeded
        (from the last success before a failure to the next success)."""
        records = sorted(self.records)
        windows = []
        last_ok = records[0][0] if records else 0.0
        current = None
        for started, seconds, ok, _reason in records:
            if ok:
                if current:
                    current[1] = started
                    windows.append(current)
                    current = None
                last_ok = started
            else:
                if current is None:
                    current = [last_ok, None, 0]
                current[2] += 1
        if current:
            current[1] = records[-1][0]
            windows.append(current)
        reasons = {}
        for _started, _seconds, ok, reason in records:
            if not ok:
                reasons[reason] = reasons.get(reason, 0) + 1
        durations = sorted(record[1] for record in records)
        failed = sum(1 for record in records if not record[2])
        longest = max(windows, key=lambda window: window[1] - window[0]) if windows else None
        return {
            "sent": len(records),
            "failed": failed,
            "reasons": reasons,
            "slowest_s": round(durations[-1], 2) if durations else 0.0,
            "p99_s": round(durations[min(len(durations) - 1, int(len(durations) * 0.99))], 2) if durations else 0.0,
            "windows": [(round(end - start, 2), count) for start, end, count in windows],
            "longest_window_s": round(longest[1] - longest[0], 2) if longest else 0.0,
            "failed_outside_longest": failed - (longest[2] if longest else 0),
        }


class ServingWatcher(_Loop):
    """Polls each node's health URL (``{name: url}``) every ``interval`` s; ``no_node_window()`` is the longest
    time in which no node answered 200."""

    def __init__(self, urls, path, interval=0.1, max_seconds=1800):
        super().__init__(interval, max_seconds)
        self.urls, self.path = urls, path
        self.samples = []  # (monotonic, any node healthy)

    def tick(self):
        moment = time.monotonic()
        healthy = any(request(url, self.path, timeout=1.0)[0] == 200 for url in self.urls.values())
        self.samples.append((moment, healthy))

    def stop(self):
        self.halt()
        return self.no_node_window()

    def no_node_window(self):
        longest, since = 0.0, None
        for moment, healthy in self.samples:
            if not healthy and since is None:
                since = moment
            elif healthy and since is not None:
                longest, since = max(longest, moment - since), None
        if since is not None and self.samples:
            longest = max(longest, self.samples[-1][0] - since)
        return round(longest, 2)


class LongRequest:
    """One request held open through the load balancer from a thread; ``result()`` is ``(status, seconds)``.
    With ``upload_seconds`` it is a POST whose body comes one byte a second for that long."""

    def __init__(self, url, path, timeout=600.0, upload_seconds=0):
        self.url, self.path, self.timeout, self.upload_seconds = url, path, timeout, upload_seconds
        self.outcome = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        started = time.monotonic()
        if self.upload_seconds:
            status = self._upload()
        else:
            status, _body = request(self.url, self.path, timeout=self.timeout)
        self.outcome = (status, round(time.monotonic() - started, 2))

    def _upload(self):
        connection = _connection(self.url, self.timeout)
        try:
            connection.putrequest("POST", self.path)
            connection.putheader("Content-Length", str(self.upload_seconds))
            connection.putheader("Connection", "close")
            connection.endheaders()
            for _ in range(self.upload_seconds):
                connection.send(b"x")
                time.sleep(1)
            return connection.getresponse().status
        except (OSError, http.client.HTTPException):
            return 0
        finally:
            connection.close()

    def result(self, timeout=None):
        self._thread.join(timeout)
        return self.outcome
