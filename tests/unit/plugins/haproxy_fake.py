"""A fake HAProxy runtime API: a real Unix socket served from a thread, answering like HAProxy 2.6 from a model.

The model is plain data, so tests can be written as data::

    backends = {"connect": {"node1": {"admin": "ready", "op": "up", "sessions": [2, 1, 0]}}}
    maps = {"/etc/haproxy/positops-hold.map": [("connect", "1764771234")]}

A server's ``sessions`` may be a list: each ``show stat`` answers with the next value (the last one stays), which
is how a drain sees sessions end. ``up_after`` makes a server whose health is down come up after that many
``show stat`` reads once it is out of maintenance (health checks passing). Commands and their effects follow the
Management Guide (section 9.3); answers to errors are HAProxy 2.6's own texts, recorded from ``haproxy -vv``
2.6.12 (Debian 12). ``received`` lists every command, in order.
"""

import os
import shutil
import socketserver
import tempfile
import threading

STAT_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"
    "act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,"
    "check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,"
    "req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,"
    "qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,"
    "check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,")
STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state "
    "bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
    "srv_agent_addr srv_agent_port")
OP_CODES = {"down": 0, "starting": 1, "up": 2, "stopping": 3}
ADMIN_CODES = {"ready": 0, "maint": 1, "drain": 8}
CHECKS = {"up": ("L7OK", "200", "Layer7 check passed"), "down": ("L7STS", "503", "Layer7 wrong status")}


class FakeHAProxy:
    def __init__(self, backends, maps=None, permission_denied=False, refuse=None):
        self.backends = {}
        for backend, servers in backends.items():
            self.backends[backend] = {}
            for name, server in servers.items():
                model = {"admin": "ready", "op": "up", "sessions": 0, "check": True, "up_after": None}
                model.update(server)
                if not isinstance(model["sessions"], list):
                    model["sessions"] = [model["sessions"]]
                self.backends[backend][name] = model
        self.maps = dict((path, list(entries)) for path, entries in (maps or {}).items())
        self.permission_denied = permission_denied
        # {command prefix: answer}: HAProxy refuses these commands with that answer.
        self.refuse = refuse or {}
        self.received = []
        self.lock = threading.Lock()
        self.directory = tempfile.mkdtemp(prefix="hap")
        self.path = os.path.join(self.directory, "admin.sock")
        self.socket_server = None
        self.thread = None

    # -- socket ---------------------------------------------------------------------------------------------------
    def __enter__(self):
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline().decode().strip()
                with fake.lock:
                    fake.received.append(line)
                    answer = fake.answer(line)
                self.wfile.write(answer.encode())

        self.socket_server = socketserver.ThreadingUnixStreamServer(self.path, Handler)
        self.socket_server.daemon_threads = True
        self.thread = threading.Thread(target=self.socket_server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.socket_server.shutdown()
        self.socket_server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- HAProxy --------------------------------------------------------------------------------------------------
    def answer(self, line):
        if self.permission_denied:
            return "Permission denied\n\n"
        for prefix, answer in self.refuse.items():
            if line.startswith(prefix):
                return answer + "\n\n"
        words = line.split()
        if line == "show stat":
            return self.show_stat()
        if line == "show servers state":
            return self.show_servers_state()
        if line == "show map":
            return self.show_map_list()
        if words[:2] == ["show", "map"] and len(words) == 3:
            return self.show_map(words[2])
        if words[:2] == ["set", "server"] and len(words) == 5:
            return self.set_server(words[2], words[3], words[4])
        if words[:3] == ["shutdown", "sessions", "server"] and len(words) == 4:
            server = self.find(words[3])
            if isinstance(server, str):
                return server
            server["sessions"] = [0]
            return "\n"
        if words[0] in ("add", "set", "del") and words[1:2] == ["map"]:
            return self.change_map(words[0], words[2:])
        return "Unknown command: '%s'\n\n" % line

    def find(self, target):
        backend, name = target.split("/", 1) if "/" in target else (target, "")
        if backend not in self.backends:
            return "No such backend.\n\n"
        if name not in self.backends[backend]:
            return "No such server.\n\n"
        return self.backends[backend][name]

    def set_server(self, target, what, value):
        server = self.find(target)
        if isinstance(server, str):
            return server
        if what == "state" and value in ADMIN_CODES:
            server["admin"] = value
        elif what == "health" and value in ("up", "down", "stopping"):
            server["op"] = {"up": "up", "down": "down", "stopping": "stopping"}[value]
        else:
            return "'set server <srv> %s' expects 'ready', 'drain' and 'maint'.\n\n" % what
        return "\n"

    def status(self, server):
        if server["admin"] == "maint":
            return "MAINT"
        if not server["check"]:
            return "no check" if server["admin"] == "ready" else "DRAIN"
        if server["admin"] == "drain" and server["op"] == "up":
            return "DRAIN"
        return {"up": "UP", "down": "DOWN", "starting": "UP 1/2", "stopping": "NOLB"}[server["op"]]

    def show_stat(self):
        lines = [STAT_HEADER]
        fields = STAT_HEADER[2:].rstrip(",").split(",")
        for backend, servers in self.backends.items():
            lines.append(",".join(self.row(fields, pxname=backend, svname="FRONTEND", status="OPEN")) + ",")
            usable = 0
            for name, server in servers.items():
                sessions = server["sessions"][0]
                if len(server["sessions"]) > 1:
                    server["sessions"].pop(0)
                if server["admin"] != "maint" and server["op"] == "down" and server["up_after"] is not None:
                    server["up_after"] -= 1
                    if server["up_after"] <= 0:
                        server["op"] = "up"
                check = CHECKS.get(server["op"], ("", "", "")) if server["check"] and server["admin"] != "maint" \
                    else ("", "", "")
                usable += server["admin"] == "ready" and server["op"] in ("up", "starting")
                lines.append(",".join(self.row(
                    fields, pxname=backend, svname=name, qcur="0", scur=str(sessions), status=self.status(server),
                    weight="1", check_status=check[0], check_code=check[1], check_desc=check[2],
                    addr="172.18.0.%d:3939" % (len(lines) + 1))) + ",")
            lines.append(",".join(self.row(fields, pxname=backend, svname="BACKEND",
                                           status="UP" if usable else "DOWN", weight=str(usable))) + ",")
        return "\n".join(lines) + "\n\n"

    @staticmethod
    def row(fields, **values):
        return [values.get(field, "") for field in fields]

    def show_servers_state(self):
        lines = ["1", STATE_HEADER]
        for be_id, (backend, servers) in enumerate(self.backends.items(), start=3):
            for srv_id, (name, server) in enumerate(servers.items(), start=1):
                check_state = (6 if server["admin"] != "maint" else 14) if server["check"] else 0
                lines.append("%d %s %d %s 172.18.0.%d %d %d 1 1 5 15 3 3 %d 0 0 0 - 3939 - 0 0 - - 0" % (
                    be_id, backend, srv_id, name, srv_id + 3, OP_CODES[server["op"]], ADMIN_CODES[server["admin"]],
                    check_state))
        return "\n".join(lines) + "\n\n"

    def show_map_list(self):
        lines = ["# id (file) description"]
        for number, (path, entries) in enumerate(self.maps.items()):
            lines.append("%d (%s) pattern loaded from file '%s' used by map at file '/etc/haproxy/positops-hold.lua' "
                         "line 1. curr_ver=0 next_ver=0 entry_cnt=%d" % (number, path, path, len(entries)))
        return "\n".join(lines) + "\n\n"

    def show_map(self, path):
        if path not in self.maps:
            return "Unknown map identifier. Please use #<id> or <file>.\n\n"
        return "".join("0x5612568154%02x %s %s\n" % (index, key, value)
                       for index, (key, value) in enumerate(self.maps[path])) + "\n"

    def change_map(self, verb, args):
        if not args or args[0] not in self.maps:
            return "Unknown map identifier. Please use #<id> or <file>.\n\n"
        entries = self.maps[args[0]]
        if verb == "add" and len(args) == 3:
            entries.append((args[1], args[2]))
            return "\n"
        if verb == "set" and len(args) == 3:
            if not [key for key, value in entries if key == args[1]]:
                return "entry not found.\n\n"
            self.maps[args[0]] = [(key, args[2] if key == args[1] else value) for key, value in entries]
            return "\n"
        if verb == "del" and len(args) == 2:
            if not [key for key, value in entries if key == args[1]]:
                return "Key not found.\n\n"
            self.maps[args[0]] = [(key, value) for key, value in entries if key != args[1]]
            return "\n"
        return "'%s map' expects other arguments.\n\n" % verb

    def server(self, backend, name):
        return self.backends[backend][name]
