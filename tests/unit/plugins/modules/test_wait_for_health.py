"""wait_for_health through the module: answers, connection errors, a failed unit, the timeout, no systemctl."""

import pytest

from ansible.module_utils import basic

from ansible_collections.positops.ha.plugins.module_utils import _health
from ansible_collections.positops.ha.plugins.modules import wait_for_health

URL = "http://127.0.0.1:3939/__ping__"
SERVICE = "rstudio-connect"
REFUSED = "Request failed: <urlopen error [Errno 111] Connection refused>"
SHOW = ["show", "-p", "ActiveState", "--value", SERVICE]


class FakeResponse:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


class FakeServer:
    """fetch_url answering from a script of statuses; an int is an answer, a str a connection error."""

    def __init__(self, clock, answers, default=503, duration=0.1):
        self.clock = clock
        self.answers = list(answers)
        self.default = default
        self.duration = duration
        self.requests = []
        self.responses = []

    def fetch_url(self, module, url, method=None, timeout=None, **kwargs):
        self.requests.append((url, method, timeout))
        self.clock.advance(self.duration)
        answer = self.answers.pop(0) if self.answers else self.default
        if isinstance(answer, str):
            return None, dict(url=url, status=-1, msg=answer)
        if answer >= 400:
            # fetch_url returns the HTTPError's body in info; the module must never pass it on.
            return None, dict(url=url, status=answer, msg="HTTP Error %s" % answer, body=b"secret body")
        response = FakeResponse()
        self.responses.append(response)
        return response, dict(url=url, status=answer, msg="OK")


@pytest.fixture
def clock(monkeypatch, fake_clock):
    monkeypatch.setattr(wait_for_health, "_now", fake_clock.monotonic)
    monkeypatch.setattr(wait_for_health, "_sleep", fake_clock.sleep)
    return fake_clock


@pytest.fixture
def server(monkeypatch, clock):
    def make(answers, default=503, duration=0.1):
        fake = FakeServer(clock, answers, default, duration)
        monkeypatch.setattr(_health, "fetch_url", fake.fetch_url)
        return fake
    return make


@pytest.fixture
def systemctl(monkeypatch, fake_cli):
    """systemctl found at fake_cli's path; script its answers with fake_cli.script."""
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                        lambda self, name, *args, **kwargs: fake_cli.path if name == "systemctl" else None)
    return fake_cli


@pytest.fixture
def no_systemctl(monkeypatch):
    looked_up = []

    def get_bin_path(self, name, *args, **kwargs):
        looked_up.append(name)
        return None

    def run_command(self, *args, **kwargs):
        raise AssertionError("nothing may be run without systemctl")

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", get_bin_path)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    return looked_up


def states(call_factory, *values):
    return [call_factory(SHOW, stdout=value + "\n") for value in values]


@pytest.mark.parametrize("check_mode", [False, True])
def test_healthy_at_the_first_poll(run_module, server, systemctl, clock, check_mode):
    fake = server([200])
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE), check_mode=check_mode)
    assert not failed and result["changed"] is False
    assert (result["status"], result["attempts"], result["elapsed"]) == (200, 1, 0.1)
    assert fake.requests == [(URL, "GET", 5)]
    assert fake.responses[0].closed
    assert clock.sleeps == []
    systemctl.assert_done()


@pytest.mark.parametrize("check_mode", [False, True])
def test_healthy_after_errors_and_503s(run_module, server, systemctl, call_factory, clock, check_mode):
    server([REFUSED, REFUSED, 503, 503, 200])
    systemctl.script(states(call_factory, "activating", "activating", "active", "active"))
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE, request_timeout=3),
                                check_mode=check_mode)
    assert not failed and result["changed"] is False
    assert (result["status"], result["attempts"]) == (200, 5)
    assert result["elapsed"] == 4.5
    assert clock.sleeps == [1, 1, 1, 1]
    assert "unit_state" not in result and "last_status" not in result
    systemctl.assert_done()


def test_other_status_code(run_module, server, no_systemctl):
    server([200, 204])
    failed, result = run_module(wait_for_health.main, dict(url=URL, status_code=204, delay=0.5))
    assert not failed and (result["status"], result["attempts"]) == (204, 2)


@pytest.mark.parametrize("check_mode", [False, True])
def test_failed_unit_on_three_polls_stops_at_once(run_module, server, systemctl, call_factory, clock, check_mode):
    server([], default=REFUSED)
    systemctl.script(states(call_factory, "activating", "failed", "failed", "failed"))
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE, timeout=600),
                                check_mode=check_mode)
    assert failed
    assert result["attempts"] == 4 and result["elapsed"] < 10
    assert clock.sleeps == [1, 1, 1]
    assert result["msg"] == (
        "rstudio-connect has failed (systemd is no longer restarting it) and %s did not answer 200 in 3.4 s;"
        " waiting longer cannot help. Fix: read `journalctl -u rstudio-connect`, remove the cause, then run the"
        " playbook again." % URL)
    assert result["unit_state"] == "failed"
    assert result["last_status"] is None and result["last_error"] == REFUSED
    systemctl.assert_done()


def test_single_failed_reading_then_activating_keeps_waiting(run_module, server, systemctl, call_factory):
    server([503, 503, 503, 503, 503, 200])
    systemctl.script(states(call_factory, "failed", "activating", "failed", "failed", "activating"))
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE))
    assert not failed and (result["status"], result["attempts"]) == (200, 6)
    systemctl.assert_done()


def test_unreadable_unit_state_is_not_failed(run_module, server, systemctl, call_factory):
    server([503, 503, 503, 200])
    systemctl.script([call_factory(SHOW, stdout="failed\n"), call_factory(SHOW, rc=1, stderr="bus error"),
                      call_factory(SHOW, stdout="failed\n")])
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE))
    assert not failed and result["attempts"] == 4
    systemctl.assert_done()


def test_timeout_names_the_last_answer(run_module, server, systemctl, call_factory, clock):
    server([REFUSED, REFUSED], default=503, duration=0)
    systemctl.script(states(call_factory, *["activating"] * 11))
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE, timeout=10))
    assert failed
    assert result["attempts"] == 11
    assert result["msg"] == (
        "%s did not answer 200 within 10 s (11 attempts; last answer: HTTP 503). Fix: check the service with"
        " `systemctl status rstudio-connect` and its log, or raise the timeout." % URL)
    assert (result["last_status"], result["last_error"], result["unit_state"]) == (503, None, "activating")
    assert clock.sleeps == [1] * 10 and result["elapsed"] == 10.0
    # No answer body anywhere.
    assert "secret body" not in result["_raw_output"]
    systemctl.assert_done()


def test_timeout_names_the_connection_error(run_module, server, no_systemctl):
    server([], default=REFUSED)
    failed, result = run_module(wait_for_health.main, dict(url=URL, timeout=3))
    assert failed
    assert result["msg"] == (
        "%s did not answer 200 within 3 s (4 attempts; last answer: %s). Fix: check the service and its log, or"
        " raise the timeout." % (URL, REFUSED))
    assert (result["last_status"], result["last_error"], result["unit_state"]) == (None, REFUSED, None)
    assert no_systemctl == []


@pytest.mark.parametrize("check_mode", [False, True])
def test_no_systemctl_waits_to_the_timeout(run_module, server, no_systemctl, clock, check_mode):
    server([], default=REFUSED)
    failed, result = run_module(wait_for_health.main, dict(url=URL, service=SERVICE, timeout=5),
                                check_mode=check_mode)
    assert failed and "within 5 s" in result["msg"] and "systemctl status rstudio-connect" in result["msg"]
    assert result["unit_state"] is None
    assert result["elapsed"] >= 5 and clock.now - 1000.0 < 6
    assert clock.sleeps[-1] == pytest.approx(0.5)  # cut short at the deadline
    assert no_systemctl == ["systemctl"]


def test_timeout_zero_polls_once(run_module, server, no_systemctl, clock):
    server([503])
    failed, result = run_module(wait_for_health.main, dict(url=URL, timeout=0))
    assert failed and result["attempts"] == 1 and clock.sleeps == []


def test_bad_values_are_refused(run_module, server, no_systemctl):
    failed, result = run_module(wait_for_health.main, dict(url=URL, delay=-1))
    assert failed and "delay must be 0 or more" in result["msg"]
