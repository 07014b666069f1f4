"""The one module that talks to Chameleon, through python-chi and the clients it configures.

Credentials are the operator's OpenStack environment (OS_AUTH_URL, OS_AUTH_TYPE,
OS_APPLICATION_CREDENTIAL_ID/SECRET, ...), which python-chi reads; nothing here prints or stores them.
Every third-party failure leaves this module as a ``ProvisionError`` that says what was being done.
Lookups are by name (lease, servers) or by a description marker (the floating IP), so a rerun finds
what an earlier run made even without its state file.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta

from core.errors import ImpError

# Sites' Keystone endpoints, used when OS_AUTH_URL is not set. chi.use_site() would fetch these from
# Chameleon's resource API at run time; a fixed table keeps `status` and `down` to the site's own APIs.
SITE_AUTH_URLS = {
    "CHI@UC": "https://chi.uc.chameleoncloud.org:5000/v3",
    "CHI@TACC": "https://chi.tacc.chameleoncloud.org:5000/v3",
    "CHI@NCAR": "https://chi.hpc.ucar.edu:5000/v3",
    "CHI@NU": "https://sl-ciab.northwestern.edu:5000/v3",
    "CHI@Edge": "https://chi.edge.chameleoncloud.org:5000/v3",
    "KVM@TACC": "https://kvm.tacc.chameleoncloud.org:5000/v3",
}
GONE = {"TERMINATED", "DELETED", "DELETING"}


class ProvisionError(ImpError):
    """A provisioning step failed; the message says which and why."""

    code = "provision_failed"


@dataclass
class LeaseInfo:
    id: str
    name: str
    status: str
    reason: str
    reservations: list[dict] = field(default_factory=list)


@dataclass
class ServerInfo:
    id: str
    name: str
    status: str
    fixed_ip: str | None
    floating_ips: list[str]
    fault: str


def _translated(what: str):
    """Turn any failure below into a ProvisionError naming the operation (the cause stays chained)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ProvisionError:
                raise
            except Exception as e:  # noqa: BLE001 - python-chi and six client libraries raise their own kinds
                raise ProvisionError(f"{what}: {type(e).__name__}: {e}") from e

        return inner

    return wrap


class ChameleonSite:
    """Leases, servers and floating IPs on one Chameleon site."""

    def __init__(self, site: str, project: str | None = None):
        self.site = site
        self.project = project
        self._ready = False

    def _chi(self):
        """Configure python-chi's context from the environment once; imported lazily (it is heavy)."""
        import chi
        import chi.clients
        import chi.context
        import chi.lease
        import chi.network
        import chi.server

        if not self._ready:
            if not any(os.environ.get(k) for k in ("OS_APPLICATION_CREDENTIAL_ID", "OS_TOKEN", "OS_PASSWORD",
                                                   "OS_ACCESS_TOKEN")):
                raise ProvisionError("no OpenStack credentials in the environment: source the site's openrc "
                                     "or set OS_AUTH_TYPE=v3applicationcredential, OS_APPLICATION_CREDENTIAL_ID "
                                     "and OS_APPLICATION_CREDENTIAL_SECRET")
            # neutronclient warns on every call that it is deprecated: noise in an operator's terminal.
            logging.getLogger("neutronclient").setLevel(logging.ERROR)
            chi.context.reset()  # re-read OS_* now, not at import
            if not os.environ.get("OS_AUTH_URL"):
                chi.set("auth_url", SITE_AUTH_URLS.get(self.site) or "")
            if not os.environ.get("OS_REGION_NAME"):
                chi.set("region_name", self.site)
            # An application credential is already scoped to its project; other logins name the project.
            app_cred = os.environ.get("OS_AUTH_TYPE", "").lower().replace("_", "") == "v3applicationcredential"
            if self.project and not app_cred and not (os.environ.get("OS_PROJECT_NAME")
                                                      or os.environ.get("OS_PROJECT_ID")):
                chi.set("project_name", self.project)
                if not (os.environ.get("OS_PROJECT_DOMAIN_NAME") or os.environ.get("OS_PROJECT_DOMAIN_ID")):
                    chi.set("project_domain_name", "chameleon")  # what chi.use_site() sets
            self._ready = True
        return chi

    # --- leases ----------------------------------------------------------------------------------
    @staticmethod
    def _lease(raw: dict) -> LeaseInfo:
        reason = raw.get("degradation") or raw.get("status_reason") or ""
        return LeaseInfo(id=raw["id"], name=raw["name"], status=raw.get("status", ""), reason=reason,
                         reservations=list(raw.get("reservations", [])))

    @_translated("listing leases")
    def find_lease(self, name: str) -> LeaseInfo | None:
        chi = self._chi()
        live = [r for r in chi.clients.blazar().lease.list() if r["name"] == name and r.get("status") not in GONE]
        if len(live) > 1:
            raise ProvisionError(f"{len(live)} leases are named {name!r}; delete the extra ones by id first")
        return self._lease(live[0]) if live else None

    @_translated("reading the lease")
    def get_lease(self, lease_id: str) -> LeaseInfo:
        return self._lease(self._chi().clients.blazar().lease.get(lease_id))

    @_translated("creating the lease")
    def create_lease(self, name: str, hours: float, groups: list) -> LeaseInfo:
        chi = self._chi()
        # python-chi builds the reservation bodies (node_type filters, flavor ids); the Blazar call
        # itself is made here so Blazar's own refusal ("not enough hosts available") reaches the operator.
        lease = chi.lease.Lease(name, duration=timedelta(hours=hours))
        for g in groups:
            if g.node_type:
                lease.add_node_reservation(amount=g.count, node_type=g.node_type)
            else:
                lease.add_flavor_reservation(name=g.flavor, amount=g.count)
        raw = chi.clients.blazar().lease.create(
            name=name, start=lease.start_date, end=lease.end_date,
            reservations=lease.node_reservations + lease.flavor_reservations, events=[])
        return self._lease(raw)

    @_translated("deleting the lease")
    def delete_lease(self, lease_id: str) -> None:
        self._chi().clients.blazar().lease.delete(lease_id)

    @_translated("matching reservations to node groups")
    def reservation_for(self, lease: LeaseInfo, group) -> tuple[str, str]:
        """The reservation that serves ``group`` and the flavor its servers boot with."""
        chi = self._chi()
        if group.node_type:
            for r in lease.reservations:
                if r.get("resource_type") == "physical:host" and f'"{group.node_type}"' in str(
                        r.get("resource_properties", "")):
                    return r["id"], "baremetal"
        else:
            flavor_id = chi.server.get_flavor_id(group.flavor)
            for r in lease.reservations:
                if r.get("resource_type") == "flavor:instance" and r.get("flavor_id") == flavor_id:
                    # KVM@TACC boots reserved VMs with the flavor it made for the reservation.
                    reserved = chi.server.list_flavors(reservation_id=r["id"])
                    if not reserved:
                        raise ProvisionError(f"no flavor exists yet for reservation {r['id']}")
                    return r["id"], reserved[0].name
        raise ProvisionError(f"lease {lease.name} has no reservation for node group {group.name!r}; "
                             "the plan changed after the lease was made: run down, then up")

    # --- servers ---------------------------------------------------------------------------------
    @staticmethod
    def _server(s) -> ServerInfo:
        fixed, floating = None, []
        for addrs in (getattr(s, "addresses", None) or {}).values():
            for a in addrs:
                if a.get("OS-EXT-IPS:type") == "floating":
                    floating.append(a["addr"])
                elif fixed is None:
                    fixed = a["addr"]
        fault = (getattr(s, "fault", None) or {}).get("message", "")
        return ServerInfo(id=s.id, name=s.name, status=s.status, fixed_ip=fixed, floating_ips=floating, fault=fault)

    @_translated("listing servers")
    def servers(self, prefix: str) -> dict[str, ServerInfo]:
        found = self._chi().clients.nova().servers.list(search_opts={"name": f"^{prefix}-"})
        return {s.name: self._server(s) for s in found if s.name.startswith(f"{prefix}-")}

    @_translated("reading a server")
    def server(self, server_id: str) -> ServerInfo | None:
        from novaclient.exceptions import NotFound

        try:
            return self._server(self._chi().clients.nova().servers.get(server_id))
        except NotFound:
            return None

    @_translated("launching a server")
    def create_server(self, name: str, reservation_id: str, image: str, flavor: str, key_pair: str,
                      network: str) -> str:
        chi = self._chi()
        created = chi.server.create_server(name, reservation_id=reservation_id, key_name=key_pair,
                                           network_name=network, image_name=image, flavor_name=flavor)
        return created.id

    @_translated("deleting a server")
    def delete_server(self, server_id: str) -> None:
        from novaclient.exceptions import NotFound

        try:
            self._chi().clients.nova().servers.delete(server_id)
        except NotFound:
            pass  # already gone: what down wanted

    # --- floating IPs ----------------------------------------------------------------------------
    @_translated("listing floating IPs")
    def find_fip(self, marker: str) -> dict | None:
        chi = self._chi()
        mine = [f for f in chi.network.list_floating_ips() if f.get("description") == marker]
        return mine[0] if mine else None

    @_translated("allocating a floating IP")
    def allocate_fip(self, marker: str, public_network: str) -> dict:
        chi = self._chi()
        body = {"floatingip": {"floating_network_id": chi.network.get_network_id(public_network),
                               "description": marker}}
        return chi.clients.neutron().create_floatingip(body)["floatingip"]

    @_translated("attaching the floating IP")
    def bind_fip(self, address: str, server_id: str) -> None:
        chi = self._chi()
        ports = chi.clients.neutron().list_ports(device_id=server_id)["ports"]
        if not ports:
            raise ProvisionError(f"server {server_id} has no network port to attach {address} to")
        chi.network.bind_floating_ip(address, port_id=ports[0]["id"])

    @_translated("releasing the floating IP")
    def release_fip(self, fip_id: str) -> None:
        self._chi().clients.neutron().delete_floatingip(fip_id)
