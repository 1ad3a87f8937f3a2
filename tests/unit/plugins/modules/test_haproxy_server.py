"""haproxy_server, as data, against a fake HAProxy runtime API socket (tests/unit/plugins/haproxy_fake.py): each
case gives the backends' model, the module arguments, the runtime API commands that must change something (in
order) and the result."""

import os

import pytest

from ansible_collections.positops.ha.plugins.modules import haproxy_server
from tests.unit.plugins.haproxy_fake import FakeHAProxy

CONNECT = "set server connect/node1"


def backends(**node1):
    """connect: node1 (the model given) and node2 (UP, serving); workbench: node1."""
    return {"connect": {"node1": node1, "node2": {"sessions": 4}}, "workbench": {"node1": {}}}


# Each case: model (node1 of connect), args, commands (that change something), expect = result keys / fragments.
CASES = {
    # ---- drain ---------------------------------------------------------------------------------------------------
    "drain-until-empty-then-maint": dict(
        model=dict(sessions=[3, 2, 1, 0]), args=dict(state="drain", drain_timeout=30),
        commands=[CONNECT + " state drain", CONNECT + " state maint"],
        expect=dict(changed=True, sessions_cut=0, drain_timed_out=False, admin="maint", previous_admin="ready",
                    waited=1.0)),
    "drain-deadline-is-not-a-failure": dict(
        model=dict(sessions=[5, 4, 3]), args=dict(state="drain", drain_timeout=2),
        commands=[CONNECT + " state drain", CONNECT + " state maint"],
        expect=dict(changed=True, sessions_cut=3, drain_timed_out=True, admin="maint", waited=2.0)),
    "drain-deadline-then-sessions-shut-down": dict(
        model=dict(sessions=[5, 4, 3]), args=dict(state="drain", drain_timeout=1, shutdown_sessions=True),
        commands=[CONNECT + " state drain", CONNECT + " state maint", "shutdown sessions server connect/node1"],
        expect=dict(changed=True, sessions_cut=3, drain_timed_out=True, admin="maint", sessions_after=0)),
    "drain-only": dict(
        model=dict(sessions=[1, 0]), args=dict(state="drain", maint_after_drain=False),
        commands=[CONNECT + " state drain"],
        expect=dict(changed=True, sessions_cut=0, drain_timed_out=False, admin="drain")),
    "drain-without-wait": dict(
        model=dict(sessions=2), args=dict(state="drain", drain_timeout=0),
        commands=[CONNECT + " state drain", CONNECT + " state maint"],
        expect=dict(changed=True, sessions_cut=2, drain_timed_out=False, admin="maint", waited=0.0)),
    "drain-already-draining": dict(
        model=dict(admin="drain", sessions=0), args=dict(state="drain"),
        commands=[CONNECT + " state maint"],
        expect=dict(changed=True, sessions_cut=0, admin="maint")),
    "drain-already-out": dict(
        model=dict(admin="maint", sessions=0), args=dict(state="drain"), commands=[],
        expect=dict(changed=False, sessions_cut=0, admin="maint")),
    "drain-of-a-down-node-ends-at-once": dict(
        model=dict(op="down", sessions=0), args=dict(state="drain"),
        commands=[CONNECT + " state drain", CONNECT + " state maint"],
        expect=dict(changed=True, sessions_cut=0, drain_timed_out=False, admin="maint", waited=0.0)),
    "drain-check-mode": dict(
        model=dict(sessions=2), args=dict(state="drain"), check_mode=True, commands=[],
        expect=dict(changed=True, sessions_cut=2, admin="ready", waited=0.0)),
    # ---- maint ---------------------------------------------------------------------------------------------------
    "maint-at-once": dict(
        model=dict(sessions=2), args=dict(state="maint"), commands=[CONNECT + " state maint"],
        expect=dict(changed=True, sessions_cut=2, admin="maint", waited=0.0)),
    "maint-and-shut-down": dict(
        model=dict(sessions=2), args=dict(state="maint", shutdown_sessions=True),
        commands=[CONNECT + " state maint", "shutdown sessions server connect/node1"],
        expect=dict(changed=True, sessions_cut=2, admin="maint", sessions_after=0)),
    "maint-already": dict(
        model=dict(admin="maint"), args=dict(state="maint"), commands=[],
        expect=dict(changed=False, sessions_cut=0, admin="maint")),
    "maint-check-mode": dict(
        model=dict(), args=dict(state="maint"), check_mode=True, commands=[],
        expect=dict(changed=True, admin="ready")),
    # ---- ready ---------------------------------------------------------------------------------------------------
    "ready-at-once-when-seen-healthy": dict(
        model=dict(admin="maint", op="down"), args=dict(state="ready", force_up=True),
        commands=[CONNECT + " health up", CONNECT + " state ready"],
        expect=dict(changed=True, admin="ready", operational="up", usable=True, waited=0.0)),
    "ready-at-once-health-already-up": dict(
        model=dict(admin="maint", op="up"), args=dict(state="ready", force_up=True),
        commands=[CONNECT + " state ready"],
        expect=dict(changed=True, admin="ready", operational="up")),
    "ready-waits-for-the-check": dict(
        model=dict(admin="maint", op="down", up_after=3), args=dict(state="ready", timeout=10),
        commands=[CONNECT + " state ready"],
        expect=dict(changed=True, admin="ready", operational="up", waited=1.0)),
    "ready-check-never-passes": dict(
        model=dict(admin="maint", op="down"), args=dict(state="ready", timeout=5),
        commands=[CONNECT + " state ready"],
        expect=dict(failed=True, waited=5.0, msg=[
            "connect/node1 did not pass HAProxy's health check within 5 s: it is DOWN; last check L7STS "
            "(Layer7 wrong status)."])),
    "ready-without-wait": dict(
        model=dict(admin="drain", op="down"), args=dict(state="ready", wait=False),
        commands=[CONNECT + " state ready"], expect=dict(changed=True, admin="ready", operational="down")),
    "ready-already": dict(
        model=dict(), args=dict(state="ready", force_up=True), commands=[],
        expect=dict(changed=False, admin="ready", operational="up")),
    "ready-check-mode": dict(
        model=dict(admin="maint", op="down"), args=dict(state="ready", force_up=True), check_mode=True,
        commands=[], expect=dict(changed=True, admin="maint")),
    # ---- names and refusals --------------------------------------------------------------------------------------
    "unknown-backend": dict(
        model=dict(), args=dict(state="drain", backend="conect"), commands=[],
        expect=dict(failed=True, msg=["This HAProxy has no backend 'conect'. Its backends: connect, workbench."],
                    known=["connect", "workbench"])),
    "unknown-server": dict(
        model=dict(), args=dict(state="maint", server="node9"), commands=[],
        expect=dict(failed=True, msg=["Backend 'connect' has no server 'node9'. Its servers: node1, node2."],
                    known=["node1", "node2"])),
    "haproxy-refuses": dict(
        model=dict(), args=dict(state="maint"), refuse={"set server": "Can't change the state."},
        commands=[CONNECT + " state maint"],
        expect=dict(failed=True, msg=["HAProxy refused 'set server connect/node1 state maint': Can't change the "
                                      "state."])),
    "name-with-space": dict(
        model=dict(), args=dict(state="maint", server="node 1"), commands=None,
        expect=dict(failed=True, msg=["server must be a name without white space"])),
}


@pytest.fixture
def clock(monkeypatch, fake_clock):
    monkeypatch.setattr(haproxy_server, "_now", fake_clock.monotonic)
    monkeypatch.setattr(haproxy_server, "_sleep", fake_clock.sleep)
    return fake_clock


@pytest.mark.parametrize("name", sorted(CASES))
def test_haproxy_server(name, run_module, clock):
    case = CASES[name]
    with FakeHAProxy(backends(**case["model"]), refuse=case.get("refuse")) as fake:
        args = dict(backend="connect", server="node1", socket=fake.path, poll_interval=0.5)
        args.update(case["args"])
        failed, result = run_module(haproxy_server.main, args, check_mode=case.get("check_mode", False))
        changes = [line for line in fake.received if not line.startswith("show ")]
        node1 = fake.server("connect", "node1")
    expect = case["expect"]
    assert failed == expect.get("failed", False), result
    if case["commands"] is not None:
        assert changes == case["commands"]
        assert result["commands"] == case["commands"]
    for fragment in expect.get("msg", []):
        assert fragment in result["msg"]
    for key in ("changed", "sessions_cut", "drain_timed_out", "waited", "known"):
        if key in expect:
            assert result[key] == expect[key], (key, result)
    for key in ("admin", "operational", "usable"):
        if key in expect:
            assert result["server"][key] == expect[key], (key, result["server"])
    if "previous_admin" in expect:
        assert result["previous"]["admin"] == expect["previous_admin"]
    if "sessions_after" in expect:
        assert node1["sessions"][-1] == expect["sessions_after"]
    if not failed:
        assert result["server"]["name"] == "node1" and result["server"]["backend"] == "connect"


def test_drain_sleeps_between_polls_and_never_past_the_deadline(run_module, clock):
    with FakeHAProxy(backends(sessions=[4])) as fake:
        failed, result = run_module(haproxy_server.main, dict(
            backend="connect", server="node1", state="drain", drain_timeout=3, poll_interval=1.0, socket=fake.path))
    assert not failed, result
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert result["waited"] == 3.0 and result["sessions_cut"] == 4


def test_the_other_servers_are_left_alone(run_module, clock):
    with FakeHAProxy(backends()) as fake:
        run_module(haproxy_server.main, dict(backend="connect", server="node1", state="maint", socket=fake.path))
        assert fake.server("connect", "node2")["admin"] == "ready"
        assert fake.server("workbench", "node1")["admin"] == "ready"


@pytest.mark.parametrize("setup, fragments", [
    ("missing", ["socket", "does not exist", "Run the task on the load balancer (delegate_to)",
                 "positops.ha.load_balancer"]),
    ("file", ["is not a socket"]),
    ("not-admin", ["is not at level admin", "level admin"]),
])
def test_socket_problems_name_the_path_and_the_fix(setup, fragments, run_module, tmp_path, clock):
    if setup == "not-admin":
        with FakeHAProxy(backends(), permission_denied=True) as fake:
            failed, result = run_module(haproxy_server.main, dict(backend="connect", server="node1", state="maint",
                                                                  socket=fake.path))
        path = fake.path
    else:
        path = str(tmp_path / "admin.sock")
        if setup == "file":
            with open(path, "w") as handle:
                handle.write("")
        failed, result = run_module(haproxy_server.main, dict(backend="connect", server="node1", state="maint",
                                                              socket=path))
    assert failed
    assert path in result["msg"]
    for fragment in fragments:
        assert fragment in result["msg"], result["msg"]
    assert not os.path.exists(path) or setup != "missing"
