"""A fake Chameleon site: Keystone, Blazar, Nova, Glance and Neutron over real HTTP on 127.0.0.1.

python-chi talks to a site through keystoneauth1 and the OpenStack clients (blazarclient, novaclient,
glanceclient, neutronclient); this fake answers the REST calls those clients make, so the provisioning
code runs python-chi unchanged against it. Point OS_AUTH_URL at ``auth_url`` and use an application
credential (the fake checks the id and secret). Every resource lives in memory; ``created`` and
``deleted`` record what was made and removed, in order, for tests to compare with the plan.

Knobs a test turns: ``lease_final_status`` ("ACTIVE" or "ERROR"), ``lease_polls_to_start`` and
``server_polls_to_active`` (how many GETs a lease/server stays PENDING/BUILD), ``fail_server_creates``
(the next N POST /servers answer 500), and ``fip_addresses`` (the pool floating IPs come from).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from tests.fakes.net import QuietHTTPServer

APP_CRED_ID = "fake-app-cred-id"
APP_CRED_SECRET = "fake-app-cred-secret"  # never a real secret: tests check it is not printed
TOKEN = "fake-token-0123456789"
IMAGE_SCHEMA = {
    "name": "image",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": ["null", "string"]},
        "status": {"type": "string"},
        "visibility": {"type": "string"},
    },
    "additionalProperties": {"type": "string"},
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class FakeChameleon:
    region: str = "CHI@UC"
    lease_final_status: str = "ACTIVE"
    lease_polls_to_start: int = 1
    server_polls_to_active: int = 1
    fail_server_creates: int = 0
    fip_addresses: deque = field(default_factory=lambda: deque(["127.0.0.1"]))
    images: dict = field(default_factory=lambda: {"img-ubuntu": "CC-Ubuntu22.04"})
    flavors: dict = field(default_factory=lambda: {
        "fl-bm": {"name": "baremetal", "extra_specs": {}},
        "fl-medium": {"name": "m1.medium", "extra_specs": {"resources:CUSTOM_RESERVATION_X": "1"}},
    })
    networks: dict = field(default_factory=lambda: {
        "net-shared": {"name": "sharednet1", "router:external": False},
        "net-public": {"name": "public", "router:external": True},
    })
    leases: dict = field(default_factory=dict)
    servers: dict = field(default_factory=dict)
    fips: dict = field(default_factory=dict)
    created: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    requests: list = field(default_factory=list)

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> FakeChameleon:
        fake = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                if method != "GET" or not parts.path.endswith("/auth/tokens"):
                    fake.requests.append((method, parts.path))
                with lock:
                    status, payload, headers = fake.route(method, parts.path, parse_qs(parts.query), body,
                                                          self.headers)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._serve("GET")

            def do_POST(self):  # noqa: N802
                self._serve("POST")

            def do_PUT(self):  # noqa: N802
                self._serve("PUT")

            def do_DELETE(self):  # noqa: N802
                self._serve("DELETE")

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def auth_url(self) -> str:
        return f"{self.base}/identity/v3"

    def env(self) -> dict[str, str]:
        """The OpenStack environment an operator would source, pointing at this fake."""
        return {"OS_AUTH_URL": self.auth_url, "OS_AUTH_TYPE": "v3applicationcredential",
                "OS_APPLICATION_CREDENTIAL_ID": APP_CRED_ID,
                "OS_APPLICATION_CREDENTIAL_SECRET": APP_CRED_SECRET,
                "OS_REGION_NAME": self.region, "OS_INTERFACE": "public", "OS_IDENTITY_API_VERSION": "3"}

    # --- routing ---------------------------------------------------------------------------------
    def route(self, method, path, query, body, headers):  # noqa: ANN001, C901 - one table of endpoints
        if path == "/identity/v3/auth/tokens" and method == "POST":
            return self._token(body)
        if headers.get("X-Auth-Token") != TOKEN:
            return 401, {"error": {"message": "The request you have made requires authentication."}}, {}
        table = [
            ("GET", r"/reservation/v1/leases", self._lease_list),
            ("POST", r"/reservation/v1/leases", self._lease_create),
            ("GET", r"/reservation/v1/leases/(?P<id>[^/]+)", self._lease_get),
            ("DELETE", r"/reservation/v1/leases/(?P<id>[^/]+)", self._lease_delete),
            ("GET", r"/compute/v2\.1/servers(/detail)?", self._server_list),
            ("POST", r"/compute/v2\.1/servers", self._server_create),
            ("GET", r"/compute/v2\.1/servers/(?P<id>[^/]+)", self._server_get),
            ("DELETE", r"/compute/v2\.1/servers/(?P<id>[^/]+)", self._server_delete),
            ("GET", r"/compute/v2\.1/flavors(/detail)?", self._flavor_list),
            ("GET", r"/compute/v2\.1/flavors/(?P<id>[^/]+)/os-extra_specs", self._flavor_specs),
            ("GET", r"/compute/v2\.1/flavors/(?P<id>[^/]+)", self._flavor_get),
            ("GET", r"/image/v2/schemas/image", lambda q, b: (200, IMAGE_SCHEMA, {})),
            ("GET", r"/image/v2/images", self._image_list),
            ("GET", r"/image/v2/images/(?P<id>[^/]+)", self._image_get),
            ("GET", r"/network/v2\.0/networks(\.json)?", self._network_list),
            ("GET", r"/network/v2\.0/floatingips(\.json)?", self._fip_list),
            ("POST", r"/network/v2\.0/floatingips(\.json)?", self._fip_create),
            ("PUT", r"/network/v2\.0/floatingips/(?P<id>[^/.]+)(\.json)?", self._fip_update),
            ("DELETE", r"/network/v2\.0/floatingips/(?P<id>[^/.]+)(\.json)?", self._fip_delete),
            ("GET", r"/network/v2\.0/ports(\.json)?", self._port_list),
        ]
        for verb, pattern, handler in table:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                args = {k: v for k, v in m.groupdict().items() if v is not None}
                return handler(query, body, **args)
        return 404, {"error": {"message": f"no route {method} {path}"}}, {}

    def _token(self, body):
        cred = body.get("auth", {}).get("identity", {}).get("application_credential", {})
        if cred.get("id") != APP_CRED_ID or cred.get("secret") != APP_CRED_SECRET:
            return 401, {"error": {"message": "Invalid application credential"}}, {}

        def svc(kind, name, suffix):
            return {"type": kind, "name": name, "id": name, "endpoints": [
                {"id": f"{name}-public", "interface": "public", "region": self.region,
                 "region_id": self.region, "url": f"{self.base}/{suffix}"}]}

        token = {"token": {
            "methods": ["application_credential"], "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": _now().strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "user": {"id": "user-1", "name": "operator", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "project-1", "name": "CHI-000000", "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "role-1", "name": "member"}],
            "application_credential": {"id": APP_CRED_ID, "name": "imp", "restricted": True},
            "catalog": [svc("identity", "keystone", "identity/v3"), svc("reservation", "blazar", "reservation/v1"),
                        svc("compute", "nova", "compute/v2.1"), svc("image", "glance", "image"),
                        svc("network", "neutron", "network")],
        }}
        return 201, token, {"X-Subject-Token": TOKEN}

    # --- Blazar ----------------------------------------------------------------------------------
    def _lease_view(self, lease: dict) -> dict:
        if lease["status"] == "PENDING":
            lease["polls"] += 1
            if lease["polls"] > self.lease_polls_to_start:
                lease["status"] = self.lease_final_status
                if lease["status"] == "ERROR":
                    lease["degradation"] = "not enough hosts available"
        return {k: v for k, v in lease.items() if k != "polls"}

    def _lease_list(self, query, body):
        return 200, {"leases": [self._lease_view(x) for x in self.leases.values()]}, {}

    def _lease_get(self, query, body, id):  # noqa: A002 - the REST path's name
        if id not in self.leases:
            return 404, {"error_code": 404, "error_message": f"Lease {id} not found"}, {}
        return 200, {"lease": self._lease_view(self.leases[id])}, {}

    def _lease_create(self, query, body):
        lease_id = str(uuid.uuid4())
        reservations = []
        for res in body.get("reservations", []):
            res = dict(res, id=str(uuid.uuid4()), lease_id=lease_id, status="pending")
            if res["resource_type"] == "flavor:instance":
                # KVM@TACC makes a flavor per flavor reservation, tagged with the reservation id.
                self.flavors[res["id"]] = {"name": f"reservation:{res['id']}",
                                           "extra_specs": {"aggregate_instance_extra_specs:reservation": res["id"]}}
            reservations.append(res)
        stamp = _now().strftime("%Y-%m-%dT%H:%M:%S.%f")
        lease = {"id": lease_id, "name": body["name"], "status": "PENDING", "polls": 0, "user_id": "user-1",
                 "project_id": "project-1", "created_at": _now().strftime("%Y-%m-%d %H:%M:%S"),
                 "start_date": stamp, "end_date": stamp, "reservations": reservations, "events": []}
        self.leases[lease_id] = lease
        self.created.append(("lease", body["name"]))
        return 201, {"lease": self._lease_view(lease)}, {}

    def _lease_delete(self, query, body, id):  # noqa: A002
        lease = self.leases.pop(id, None)
        if lease is None:
            return 404, {"error_code": 404, "error_message": f"Lease {id} not found"}, {}
        self.deleted.append(("lease", lease["name"]))
        return 204, None, {}

    # --- Nova ------------------------------------------------------------------------------------
    def _server_view(self, srv: dict) -> dict:
        if srv["status"] == "BUILD":
            srv["polls"] += 1
            if srv["polls"] > self.server_polls_to_active:
                srv["status"] = "ACTIVE"
        return {k: v for k, v in srv.items() if k != "polls"}

    def _server_list(self, query, body):
        found = [self._server_view(s) for s in self.servers.values()]
        if "name" in query:
            found = [s for s in found if re.search(query["name"][0], s["name"])]
        return 200, {"servers": found}, {}

    def _server_get(self, query, body, id):  # noqa: A002
        if id not in self.servers:
            return 404, {"itemNotFound": {"code": 404, "message": "Instance could not be found."}}, {}
        return 200, {"server": self._server_view(self.servers[id])}, {}

    def _server_create(self, query, body):
        if self.fail_server_creates > 0:
            self.fail_server_creates -= 1
            return 500, {"computeFault": {"code": 500, "message": "Unexpected API Error (scripted)."}}, {}
        spec = body["server"]
        if spec["imageRef"] not in self.images:
            return 400, {"badRequest": {"code": 400, "message": f"Image {spec['imageRef']} could not be found."}}, {}
        if spec["flavorRef"] not in self.flavors:
            return 400, {"badRequest": {"code": 400, "message": f"Flavor {spec['flavorRef']} could not be found."}}, {}
        server_id = str(uuid.uuid4())
        net = self.networks[spec["networks"][0]["uuid"]]["name"]
        fixed = f"10.52.0.{len(self.servers) + 10}"
        hints = body.get("os:scheduler_hints", {})
        self.servers[server_id] = {
            "id": server_id, "name": spec["name"], "status": "BUILD", "polls": 0, "key_name": spec.get("key_name"),
            "image": {"id": spec["imageRef"]}, "flavor": {"original_name": self.flavors[spec["flavorRef"]]["name"]},
            "addresses": {net: [{"addr": fixed, "version": 4, "OS-EXT-IPS:type": "fixed"}]},
            "metadata": {"reservation": hints.get("reservation", "")}, "created": _now().isoformat(),
            "hostId": "host-1", "tenant_id": "project-1", "user_id": "user-1", "links": [],
        }
        self.created.append(("server", spec["name"]))
        return 202, {"server": {"id": server_id, "links": [], "OS-DCF:diskConfig": "MANUAL"}}, {}

    def _server_delete(self, query, body, id):  # noqa: A002
        srv = self.servers.pop(id, None)
        if srv is None:
            return 404, {"itemNotFound": {"code": 404, "message": "Instance could not be found."}}, {}
        for fip in self.fips.values():
            if fip["port_id"] == f"port-{id}":
                fip.update(port_id=None, fixed_ip_address=None, status="DOWN")
        self.deleted.append(("server", srv["name"]))
        return 204, None, {}

    def _flavor_json(self, fid: str) -> dict:
        f = self.flavors[fid]
        return {"id": fid, "name": f["name"], "ram": 4096, "vcpus": 2, "disk": 40, "description": None,
                "OS-FLV-EXT-DATA:ephemeral": 0, "swap": "", "rxtx_factor": 1.0, "os-flavor-access:is_public": True,
                "extra_specs": f["extra_specs"], "links": []}

    def _flavor_list(self, query, body):
        return 200, {"flavors": [self._flavor_json(fid) for fid in self.flavors]}, {}

    def _flavor_get(self, query, body, id):  # noqa: A002
        if id not in self.flavors:
            return 404, {"itemNotFound": {"code": 404, "message": f"Flavor {id} could not be found."}}, {}
        return 200, {"flavor": self._flavor_json(id)}, {}

    def _flavor_specs(self, query, body, id):  # noqa: A002
        return 200, {"extra_specs": self.flavors[id]["extra_specs"]}, {}

    # --- Glance ----------------------------------------------------------------------------------
    def _image_list(self, query, body):
        wanted = query.get("name", [None])[0]
        images = [{"id": i, "name": n, "status": "active", "visibility": "public"}
                  for i, n in self.images.items() if wanted in (None, n)]
        return 200, {"images": images, "schema": "/v2/schemas/images", "first": "/v2/images"}, {}

    def _image_get(self, query, body, id):  # noqa: A002
        if id not in self.images:
            return 404, {"message": f"No image found with ID {id}"}, {}
        return 200, {"id": id, "name": self.images[id], "status": "active", "visibility": "public"}, {}

    # --- Neutron ---------------------------------------------------------------------------------
    def _network_list(self, query, body):
        nets = [dict(v, id=k, status="ACTIVE", subnets=[]) for k, v in self.networks.items()]
        if "name" in query:
            nets = [n for n in nets if n["name"] == query["name"][0]]
        return 200, {"networks": nets}, {}

    def _fip_list(self, query, body):
        return 200, {"floatingips": list(self.fips.values())}, {}

    def _fip_create(self, query, body):
        if not self.fip_addresses:
            return 409, {"NeutronError": {"type": "IpAddressGenerationFailure", "detail": "",
                                          "message": "No more IP addresses available on network public."}}, {}
        spec = body["floatingip"]
        fip_id = str(uuid.uuid4())
        self.fips[fip_id] = {"id": fip_id, "floating_ip_address": self.fip_addresses.popleft(), "port_id": None,
                             "fixed_ip_address": None, "status": "DOWN", "tags": [],
                             "floating_network_id": spec["floating_network_id"],
                             "description": spec.get("description", "")}
        self.created.append(("floating_ip", self.fips[fip_id]["floating_ip_address"]))
        return 201, {"floatingip": self.fips[fip_id]}, {}

    def _fip_update(self, query, body, id):  # noqa: A002
        fip = self.fips[id]
        port_id = body["floatingip"].get("port_id")
        fip.update(port_id=port_id, status="ACTIVE" if port_id else "DOWN")
        server_id = port_id.removeprefix("port-") if port_id else None
        for srv in self.servers.values():
            addrs = [a for a in next(iter(srv["addresses"].values())) if a["OS-EXT-IPS:type"] == "fixed"]
            if srv["id"] == server_id:
                addrs.append({"addr": fip["floating_ip_address"], "version": 4, "OS-EXT-IPS:type": "floating"})
            srv["addresses"] = {next(iter(srv["addresses"])): addrs}
        return 200, {"floatingip": fip}, {}

    def _fip_delete(self, query, body, id):  # noqa: A002
        fip = self.fips.pop(id, None)
        if fip is None:
            return 404, {"NeutronError": {"type": "FloatingIPNotFound", "message": "not found", "detail": ""}}, {}
        self.fip_addresses.append(fip["floating_ip_address"])
        self.deleted.append(("floating_ip", fip["floating_ip_address"]))
        return 204, None, {}

    def _port_list(self, query, body):
        device = query.get("device_id", [None])[0]
        ports = [{"id": f"port-{s['id']}", "device_id": s["id"], "network_id": "net-shared", "status": "ACTIVE",
                  "fixed_ips": [{"ip_address": next(iter(s["addresses"].values()))[0]["addr"]}]}
                 for s in self.servers.values() if device in (None, s["id"])]
        return 200, {"ports": ports}, {}
