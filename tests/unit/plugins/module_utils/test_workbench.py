"""Parsers of rstudio-server output, against recorded outputs (tests/unit/plugins/cli_output/rstudio-server/, sources
in sources.yml), time stamps and the missed check-in rule under fixed clocks and time zones, and the local-node
identity used to refuse changing another node."""

import calendar
import datetime
import os
import time

import pytest

from ansible_collections.positops.ha.plugins.module_utils import _workbench as workbench
from ansible_collections.positops.ha.plugins.module_utils._cli import CliParseError
from ansible_collections.positops.ha.plugins.module_utils._workbench import (
    is_local, last_seen_epoch, local_epoch, parse_delete_node, parse_last_seen, parse_list_nodes,
    read_www_host_name)


def utc(*fields):
    return calendar.timegm(datetime.datetime(*fields).timetuple())


def as_utc(stamp, zone):
    """A stand-in for the server's local time zone: UTC, whatever zone the test machine has."""
    return calendar.timegm(stamp.timetuple()) + stamp.microsecond / 1e6


# The clock of the recorded outputs: every one was taken at about 2026-11-23 12:40:05, server time.
NOW = utc(2026, 11, 23, 12, 40, 5)


@pytest.fixture
def local_zone():
    """Set this process's local time zone (a POSIX TZ string, no tz database needed) for one test."""
    saved = os.environ.get("TZ")

    def set_zone(zone):
        os.environ["TZ"] = zone
        time.tzset()

    yield set_zone
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def rows(nodes):
    return [(n["id"], n["name"], n["ipv4"], n["port"], n["status"], n["mode"], n["last_seen"]) for n in nodes]


def states(nodes):
    return [(n["id"], n["status"], n["health"], n["mode"], n["missed_check_in"]) for n in nodes]


def test_list_nodes_every_documented_status(cli_output):
    nodes = parse_list_nodes(cli_output("rstudio-server/list-nodes-mixed.txt"), now=NOW, to_epoch=as_utc)
    assert rows(nodes) == [
        (2, "rsw2", "172.18.0.6", 8787, "Online", "online", "2026-11-23 12:39:30"),
        (3, "rsw3", "172.18.0.7", 8787, "Missed check-in", None, "2026-11-23 12:25:00"),
        (1, "rsw-primaryyy", None, 8787, "Failed to resolve", None, None),
        (4, "rsw4", "172.18.0.8", 8787, "Invalid permissions on secure cookie key", None, "2026-11-23 12:39:30"),
        (5, "rsw5", "172.18.0.9", 8787, "Offline", "offline", "2026-11-23 12:39:30"),
        (6, "rsw6", "172.18.0.10", 8787, "Invalid secure cookie key", None, "2026-11-23 12:39:30"),
    ]
    assert [n["missed_check_in"] for n in nodes] == [False, True, False, False, False, False]
    assert all(n["version"] is None and n["health"] is None for n in nodes)


def test_list_nodes_documentation_example_without_last_seen_column(cli_output):
    nodes = parse_list_nodes(cli_output("rstudio-server/list-nodes-docs-example.txt"), now=NOW)
    assert rows(nodes) == [
        (1, "rsw-primaryyy", None, 8787, "Failed to resolve", None, None),
        (2, "rsw-secondary", "123.456.78.100", 8787, "Online", "online", None),
        (3, "rsw-primary", "123.456.78.101", 8787, "Online", "online", None),
    ]


# Every listing variant with a clock: (recorded output, now, [(id, status, health, mode, missed_check_in)]).
VARIANTS = [
    # The release announcement's layout: a Cluster/Protocol preamble, Boost's YYYY-Mon-DD, local time.
    ("rstudio-server/list-nodes-announcement-2021-09.txt", NOW,
     [(1, "Online", None, "online", False), (2, "Invalid secure cookie key", None, None, False),
      (3, "Offline", None, "offline", False)]),
    # The same listing read 20 minutes later: rsw1 printed Online, but silent for 21 minutes.
    ("rstudio-server/list-nodes-announcement-2021-09.txt", NOW + 1200,
     [(1, "Online", None, None, True), (2, "Invalid secure cookie key", None, None, False),
      (3, "Offline", None, "offline", False)]),
    # A Health column and a zone after the time: rsw2 has been silent for 11 minutes.
    ("rstudio-server/list-nodes-health-zone.txt", NOW,
     [(1, "Online", "Healthy", "online", False), (2, "Online", "Unhealthy", None, True),
      (3, "Missed check-in", "Unknown", None, True), (4, "Failed to resolve", None, None, False)]),
    # Offsets: 13:38:53+01:00 and 12:39:59.250Z are fresh, 07:29:00 -0500 (12:29 UTC) is 11 minutes old.
    ("rstudio-server/list-nodes-offsets.txt", NOW,
     [(1, "Online", None, "online", False), (2, "Online", None, None, True), (3, "Online", None, "online", False),
      (4, "Offline", None, "offline", False)]),
    # The emulator's layout, local time: rsw2 is printed Online but has been silent for 15 minutes.
    ("rstudio-server/list-nodes-online-but-silent.txt", NOW,
     [(1, "Online", None, "online", False), (2, "Online", None, None, True)]),
    # Without a clock, only the printed status counts.
    ("rstudio-server/list-nodes-online-but-silent.txt", None,
     [(1, "Online", None, "online", False), (2, "Online", None, "online", False)]),
]


@pytest.mark.parametrize("recorded, now, expected", VARIANTS,
                         ids=["%s@%s" % (case[0].split("/")[-1], case[1]) for case in VARIANTS])
def test_every_listing_variant_with_a_fixed_clock(cli_output, recorded, now, expected):
    assert states(parse_list_nodes(cli_output(recorded), now=now, to_epoch=as_utc)) == expected


def test_announcement_layout_reads_every_column(cli_output):
    nodes = parse_list_nodes(cli_output("rstudio-server/list-nodes-announcement-2021-09.txt"))
    assert rows(nodes) == [
        (1, "rsw1", "10.20.0.11", 8787, "Online", "online", "2026-Nov-23 12:38:53"),
        (2, "rsw2", "10.20.0.12", 8787, "Invalid secure cookie key", None, "2026-Nov-23 12:10:25"),
        (3, "rsw3", "10.20.0.13", 8787, "Offline", "offline", "2026-Nov-23 12:10:34"),
    ]


@pytest.mark.parametrize("age, missed", [(0, False), (599, False), (600, False), (601, True), (-3600, False)])
def test_missed_check_in_after_ten_minutes(age, missed):
    text = "ID  Host  Status  Last Seen\n1   a     Online  2026-11-23 12:40:05 UTC\n"
    node = parse_list_nodes(text, now=NOW + age)[0]
    assert (node["missed_check_in"], node["mode"]) == (missed, None if missed else "online")


def test_online_without_last_seen_is_not_called_missed():
    node = parse_list_nodes("ID  Host  Status  Last Seen\n1   a     Online\n", now=NOW)[0]
    assert (node["mode"], node["missed_check_in"]) == ("online", False)


def test_statuses_are_mapped_without_regard_to_case():
    nodes = parse_list_nodes("ID  Host  Status\n1   a     ONLINE\n2   b     missed check-in\n")
    assert states(nodes) == [(1, "ONLINE", None, "online", False), (2, "missed check-in", None, None, True)]


@pytest.mark.parametrize("text, fields", [
    ("2026-11-23 12:40:05", ((2026, 11, 23, 12, 40, 5, 0), None, None)),
    ("2021-Sep-20 17:08:53", ((2021, 9, 20, 17, 8, 53, 0), None, None)),
    ("2021-sep-20 17:08:53.123456789", ((2021, 9, 20, 17, 8, 53, 123456), None, None)),
    ("2026-11-23T12:40:05Z", ((2026, 11, 23, 12, 40, 5, 0), 0, "Z")),
    ("2026-11-23 12:40:05 UTC", ((2026, 11, 23, 12, 40, 5, 0), 0, "UTC")),
    ("2026-11-23 13:40:05+01:00", ((2026, 11, 23, 13, 40, 5, 0), 3600, "+01:00")),
    ("2026-11-23 07:10:05 -0530", ((2026, 11, 23, 7, 10, 5, 0), -19800, "-0530")),
    ("2026-11-23 14:40:05 GMT+2", ((2026, 11, 23, 14, 40, 5, 0), 7200, "GMT+2")),
    ("2026-11-23 13:40:05 CET", ((2026, 11, 23, 13, 40, 5, 0), None, "CET")),
    ("2026/11/23 13:40:05 Europe/Berlin", ((2026, 11, 23, 13, 40, 5, 0), None, "Europe/Berlin")),
])
def test_parse_last_seen(text, fields):
    stamp, offset, zone = parse_last_seen(text)
    assert ((stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second, stamp.microsecond),
            offset, zone) == fields


@pytest.mark.parametrize("text", ["yesterday", "2026-13-23 12:40:05", "2026-Foo-23 12:40:05", "2026-11-23",
                                  "2026-11-23 12:40:05 +25:00", "2026-11-23 12:40:05 in the morning"])
def test_parse_last_seen_refuses(text):
    with pytest.raises(ValueError):
        parse_last_seen(text)


@pytest.mark.parametrize("text", ["2026-11-23T12:40:05Z", "2026-11-23 13:40:05+01:00", "2026-11-23 07:40:05 -0500",
                                  "2026-11-23 12:40:05 UTC", "2026-Nov-23 12:40:05 GMT",
                                  "2026-11-23 13:40:05 Europe/Berlin"])
def test_last_seen_with_a_zone_is_the_same_instant_whatever_the_local_zone(local_zone, text):
    for zone in ("UTC0", "EST5EDT,M3.2.0,M11.1.0", "JST-9"):
        local_zone(zone)
        assert last_seen_epoch(text) == NOW


def test_last_seen_without_a_zone_is_local_time(local_zone):
    local_zone("EST5EDT,M3.2.0,M11.1.0")
    assert last_seen_epoch("2026-11-23 07:40:05") == NOW  # EST is UTC-5 in November
    assert last_seen_epoch("2026-Jul-01 08:00:00") == utc(2026, 7, 1, 12, 0, 0)  # EDT, UTC-4
    local_zone("JST-9")
    assert last_seen_epoch("2026-11-23 21:40:05") == NOW
    assert last_seen_epoch("2026-11-23 21:40:05", to_epoch=as_utc) == NOW + 9 * 3600


def test_a_zone_abbreviation_settles_the_hour_that_occurs_twice(local_zone):
    # Clocks go back from 03:00 CEST to 02:00 CET on 2026-10-25: 02:30 happens twice.
    local_zone("CET-1CEST,M3.5.0,M10.5.0/3")
    assert last_seen_epoch("2026-10-25 02:30:00 CEST") == utc(2026, 10, 25, 0, 30)
    assert last_seen_epoch("2026-10-25 02:30:00 CET") == utc(2026, 10, 25, 1, 30)
    assert local_epoch(datetime.datetime(2026, 11, 23, 13, 40, 5)) == NOW


def test_missed_check_in_with_local_time_in_another_zone(local_zone, cli_output):
    # The emulator's listing, printed by a server in New York at 07:40:05 EST (12:40:05 UTC).
    local_zone("EST5EDT,M3.2.0,M11.1.0")
    text = cli_output("rstudio-server/list-nodes-online-but-silent.txt").replace(" 12:", " 07:")
    assert states(parse_list_nodes(text, now=NOW)) == [(1, "Online", None, "online", False),
                                                       (2, "Online", None, None, True)]


def test_list_nodes_header_only_is_no_nodes(cli_output):
    assert parse_list_nodes(cli_output("rstudio-server/list-nodes-header-only.txt")) == []


@pytest.mark.parametrize("text, message", [
    ("@rstudio-server/list-nodes-misaligned.txt", "line 2 is not aligned under the header"),
    ("", "expected a header line starting with 'ID'"),
    ("@rstudio-server/error-lb-disabled.txt", "expected a header line starting with 'ID'"),
    ("Cluster\n-------\nProtocol\nHttp\n",
     "expected a header line starting with 'ID' (ID  Host  IPv4  Port  Status ...), got 'Cluster'"),
    ("ID  Host  IPv4  Port\n1   a     b     1\n", "the header has no 'Status' column"),
    ("ID  IPv4  Port\n1   b     1\n", "the header has no 'Host' or 'Status' column"),
    ("ID  Host  IPv4  Port  Status\nx   a           1     Online\n", "line 2: node ID 'x' is not a number"),
    ("ID  Host  IPv4  Port  Status\n1   a           p     Online\n", "line 2: port 'p' is not a number"),
    ("ID  Host  IPv4  Port  Status\n1   a           1\n", "line 2 has no status"),
    ("Nodes\n-----\nID  Host  Status\n1   a     Online\nTotal: 1 node\n", "line 5 is not aligned under the header"),
    ("ID  Host  IPv4  Port  Status  Last Seen\n1   a           1     Online  yesterday\n",
     "line 2: last seen 'yesterday' is not a time stamp such as 2026-11-23 12:40:05 or 2021-Sep-20 17:08:53"),
    ("ID  Host  Status  Last Seen\n1   a     Online  2026-11-23 12:40:05 somewhere else\n",
     "unknown zone 'somewhere else'"),
    ("ID  Host  Status  Last Seen\n1   a     Online  2026-11-23 12:40:05 Nowhere/Atlantis\n",
     "unknown time zone 'Nowhere/Atlantis'"),
])
def test_list_nodes_rejects_what_it_does_not_understand(cli_output, text, message):
    if text.startswith("@"):  # a recorded output
        text = cli_output(text[1:])
    with pytest.raises(CliParseError) as raised:
        parse_list_nodes(text, now=NOW)
    assert message in str(raised.value)


def test_delete_node_parser(cli_output):
    assert parse_delete_node(1)(cli_output("rstudio-server/delete-node-1.txt")) == 1
    with pytest.raises(CliParseError, match="expected 'Node 2 deleted.'"):
        parse_delete_node(2)(cli_output("rstudio-server/delete-node-1.txt"))
    with pytest.raises(CliParseError):
        parse_delete_node(1)("")


@pytest.mark.parametrize("content, expected", [
    ("www-host-name=rsw1.example.com\n", "rsw1.example.com"),
    ("balancer=sessions\nwww-host-name = https://rsw1.example.com:8787/\n", "rsw1.example.com"),
    ("[config]\nbalancer=sessions\n", None),
    ("www-host-name=\n", None),
])
def test_read_www_host_name(tmp_path, content, expected):
    path = tmp_path / "load-balancer"
    path.write_text(content)
    assert read_www_host_name(str(path)) == expected


def test_read_www_host_name_missing_file(tmp_path):
    assert read_www_host_name(str(tmp_path / "none")) is None


def test_local_identity_includes_host_name_and_load_balancer_name(monkeypatch, tmp_path):
    config = tmp_path / "load-balancer"
    config.write_text("www-host-name=rsw-public.example.com:8787\n")
    monkeypatch.setattr(workbench, "LOAD_BALANCER_CONFIG", str(config))
    monkeypatch.setattr(workbench.socket, "gethostname", lambda: "RSW1.lab")
    monkeypatch.setattr(workbench.socket, "getfqdn", lambda: "rsw1.lab")
    monkeypatch.setattr(workbench.socket, "getaddrinfo",
                        lambda name, port, family: [(family, 1, 6, "", ("172.18.0.5", 0))])
    identity = workbench.local_identity()
    assert identity == {"names": {"rsw1.lab", "rsw1", "rsw-public.example.com"}, "addresses": {"172.18.0.5"}}


def test_local_identity_survives_unresolvable_host(monkeypatch):
    def fail(*args):
        raise workbench.socket.gaierror("no")
    monkeypatch.setattr(workbench.socket, "gethostname", lambda: "lonely")
    monkeypatch.setattr(workbench.socket, "getfqdn", lambda: "lonely")
    monkeypatch.setattr(workbench.socket, "getaddrinfo", fail)
    monkeypatch.setattr(workbench, "read_www_host_name", lambda path=None: None)
    assert workbench.local_identity() == {"names": {"lonely"}, "addresses": set()}


@pytest.mark.parametrize("record, local", [
    ({"name": "RSW1", "ipv4": "10.0.0.9"}, True),
    ({"name": "rsw1:8787", "ipv4": None}, True),
    ({"name": "172.18.0.5", "ipv4": "172.18.0.5"}, True),
    ({"name": "rsw2", "ipv4": "172.18.0.6"}, False),
    ({"name": None, "ipv4": None}, False),
])
def test_is_local(record, local):
    assert is_local(record, {"names": {"rsw1"}, "addresses": {"172.18.0.5"}}) is local
