"""haproxy_hold and haproxy_server_info, as data, against a fake HAProxy runtime API socket."""

import pytest

from ansible_collections.positops.ha.plugins.modules import haproxy_hold, haproxy_server_info
from tests.unit.plugins.haproxy_fake import FakeHAProxy

MAP = "/etc/haproxy/positops-hold.map"
NOW = 1764770000
OFF = {"on": False, "expires_at": None, "expires_in": 0, "admit": []}
BACKENDS = {"connect": {"node1": {"admin": "maint"}, "node2": {"admin": "maint", "op": "down"}},
            "workbench": {"node1": {}}, "package_manager": {"pm1": {"admin": "drain"}}}

# Each case: map entries before, args, commands (that change something), map entries after, expect.
CASES = {
    "on-adds-a-switch-with-its-expiry": dict(
        entries=[], args=dict(backends=["connect"], state="on", expires=1800),
        commands=["add map %s connect %d" % (MAP, NOW + 1800)], after=[("connect", str(NOW + 1800))],
        expect=dict(changed=True, holds={"connect": {"on": True, "expires_at": NOW + 1800, "expires_in": 1800,
                                                     "admit": []}})),
    "on-again-extends-without-a-change": dict(
        entries=[("connect", str(NOW + 100))], args=dict(backends=["connect"], state="on"),
        commands=["set map %s connect %d" % (MAP, NOW + 3600)], after=[("connect", str(NOW + 3600))],
        expect=dict(changed=False, holds={"connect": {"on": True, "expires_at": NOW + 3600, "expires_in": 3600,
                                                      "admit": []}})),
    "on-over-an-expired-switch": dict(
        entries=[("connect", str(NOW - 5))], args=dict(backends=["connect"], state="on"),
        commands=["set map %s connect %d" % (MAP, NOW + 3600)], after=[("connect", str(NOW + 3600))],
        expect=dict(changed=True)),
    "on-two-backends": dict(
        entries=[("workbench", str(NOW + 10))], args=dict(backends=["connect", "workbench"], expires=60),
        commands=["add map %s connect %d" % (MAP, NOW + 60), "set map %s workbench %d" % (MAP, NOW + 60)],
        after=[("workbench", str(NOW + 60)), ("connect", str(NOW + 60))], expect=dict(changed=True)),
    "off-removes-the-switch": dict(
        entries=[("connect", str(NOW + 100)), ("workbench", str(NOW + 100))],
        args=dict(backends=["connect"], state="off"),
        commands=["del map %s connect" % MAP], after=[("workbench", str(NOW + 100))],
        expect=dict(changed=True, holds={"connect": OFF})),
    "off-when-off": dict(
        entries=[], args=dict(backends=["connect"], state="off"), commands=[], after=[],
        expect=dict(changed=False, holds={"connect": OFF})),
    "off-everything": dict(
        entries=[("connect", str(NOW + 100)), ("workbench", str(NOW - 100))], args=dict(state="off"),
        commands=["del map %s connect" % MAP, "del map %s workbench" % MAP], after=[],
        expect=dict(changed=True, holds={"connect": OFF, "workbench": OFF})),
    "on-check-mode": dict(
        entries=[], args=dict(backends=["connect"]), check_mode=True, commands=[], after=[],
        expect=dict(changed=True, holds={"connect": {"on": True, "expires_at": NOW + 3600, "expires_in": 3600,
                                                     "admit": []}})),
    "off-check-mode": dict(
        entries=[("connect", str(NOW + 100))], args=dict(backends=["connect"], state="off"), check_mode=True,
        commands=[], after=[("connect", str(NOW + 100))], expect=dict(changed=True)),
    "unknown-backend": dict(
        entries=[], args=dict(backends=["conect"]), commands=[], after=[],
        expect=dict(failed=True, msg="This HAProxy has no backend 'conect'. Its backends: connect, "
                                     "package_manager, workbench.")),
    "on-needs-backends": dict(
        entries=[], args=dict(state="on"), commands=[], after=[],
        expect=dict(failed=True, msg="state=on needs backends")),
    "map-not-loaded": dict(
        entries=None, args=dict(backends=["connect"]), commands=[], after=None,
        expect=dict(failed=True, msg="HAProxy has not loaded the hold map /etc/haproxy/positops-hold.map: the hold "
                                     "is not configured on this load balancer")),
    "on-with-servers-to-admit": dict(
        entries=[], args=dict(backends=["connect"], admit=["node1"], expires=600),
        commands=["add map %s connect %d:node1" % (MAP, NOW + 600)], after=[("connect", "%d:node1" % (NOW + 600))],
        expect=dict(changed=True, holds={"connect": {"on": True, "expires_at": NOW + 600, "expires_in": 600,
                                                     "admit": ["node1"]}})),
    "on-again-with-other-servers-to-admit-is-a-change": dict(
        entries=[("connect", "%d:node1" % (NOW + 100))], args=dict(backends=["connect"], admit=["node1", "node2"]),
        commands=["set map %s connect %d:node1,node2" % (MAP, NOW + 3600)],
        after=[("connect", "%d:node1,node2" % (NOW + 3600))], expect=dict(changed=True)),
    "on-again-without-servers-to-admit-is-a-change": dict(
        entries=[("connect", "%d:node1" % (NOW + 100))], args=dict(backends=["connect"]),
        commands=["set map %s connect %d" % (MAP, NOW + 3600)], after=[("connect", str(NOW + 3600))],
        expect=dict(changed=True, holds={"connect": {"on": True, "expires_at": NOW + 3600, "expires_in": 3600,
                                                     "admit": []}})),
    "an-expired-switch-admits-nothing": dict(
        entries=[("connect", "%d:node1" % (NOW - 5))], args=dict(backends=["connect"], state="off"),
        commands=["del map %s connect" % MAP], after=[],
        expect=dict(changed=True, holds={"connect": {"on": False, "expires_at": None, "expires_in": 0,
                                                     "admit": []}})),
    "admit-of-an-unknown-server": dict(
        entries=[], args=dict(backends=["connect"], admit=["node3"]), commands=[], after=[],
        expect=dict(failed=True, msg="admit names 'node3', not a server of backend 'connect'. Its servers: node1, "
                                     "node2.")),
    "admit-with-off": dict(
        entries=[], args=dict(backends=["connect"], state="off", admit=["node1"]), commands=[], after=[],
        expect=dict(failed=True, msg="admit is for state=on")),
}


@pytest.fixture
def fixed_time(monkeypatch):
    monkeypatch.setattr(haproxy_hold, "_time", lambda: NOW)
    monkeypatch.setattr(haproxy_server_info.time, "time", lambda: NOW)


@pytest.mark.parametrize("name", sorted(CASES))
def test_haproxy_hold(name, run_module, fixed_time):
    case = CASES[name]
    maps = {} if case["entries"] is None else {MAP: case["entries"]}
    with FakeHAProxy(BACKENDS, maps=maps) as fake:
        args = dict(socket=fake.path)
        args.update(case["args"])
        failed, result = run_module(haproxy_hold.main, args, check_mode=case.get("check_mode", False))
        changes = [line for line in fake.received if not line.startswith("show ")]
    expect = case["expect"]
    assert failed == expect.get("failed", False), result
    assert changes == case["commands"]
    if "msg" in expect:
        assert expect["msg"] in result["msg"]
    if case["after"] is not None:
        assert fake.maps[MAP] == case["after"]
    for key in ("changed", "holds"):
        if key in expect:
            assert result[key] == expect[key], (key, result)


# ---- haproxy_server_info -----------------------------------------------------------------------------------------
def test_info_reads_every_backend_with_the_hold(run_module, fixed_time):
    with FakeHAProxy(BACKENDS, maps={MAP: [("connect", str(NOW + 40))]}) as fake:
        failed, result = run_module(haproxy_server_info.main, dict(socket=fake.path), check_mode=True)
        assert [line for line in fake.received if not line.startswith("show ")] == []
    assert not failed, result
    assert sorted(result["backends"]) == ["connect", "package_manager", "workbench"]
    connect = result["backends"]["connect"]
    assert connect["usable_servers"] == 0
    assert connect["hold"] == {"on": True, "expires_at": NOW + 40, "expires_in": 40}
    assert [(s["name"], s["admin"], s["operational"], s["status"]) for s in connect["servers"].values()] == [
        ("node1", "maint", "up", "MAINT"), ("node2", "maint", "down", "MAINT")]
    assert result["backends"]["workbench"]["usable_servers"] == 1
    assert result["backends"]["workbench"]["hold"] == {"on": False, "expires_at": None, "expires_in": 0}
    drained = result["backends"]["package_manager"]["servers"]["pm1"]
    assert (drained["admin"], drained["usable"], drained["status"]) == ("drain", False, "DRAIN")
    assert result["changed"] is False


def test_info_one_backend_without_the_hold_map(run_module, fixed_time):
    with FakeHAProxy(BACKENDS) as fake:
        failed, result = run_module(haproxy_server_info.main, dict(socket=fake.path, backends=["workbench"]))
    assert not failed, result
    assert list(result["backends"]) == ["workbench"]
    assert result["backends"]["workbench"]["hold"] is None
    assert result["backends"]["workbench"]["servers"]["node1"]["usable"] is True


def test_info_unknown_backend(run_module, fixed_time):
    with FakeHAProxy(BACKENDS) as fake:
        failed, result = run_module(haproxy_server_info.main, dict(socket=fake.path, backends=["rspm"]))
    assert failed
    assert result["msg"] == "This HAProxy has no backend 'rspm'. Its backends: connect, package_manager, workbench."
    assert result["known"] == ["connect", "package_manager", "workbench"]
