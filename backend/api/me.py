"""GET /api/me: what the caller's credentials map to (the operator's dry run)."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import PrincipalDep, ServicesDep
from backend.api.pages import nav_links
from backend.auth.claims import missing_access_hint
from backend.auth.guard import is_operator

router = APIRouter(prefix="/api", tags=["identity"])


@router.get("/me")
def me(principal: PrincipalDep, services: ServicesDep) -> dict:
    data = principal.public()
    data["assistants"] = {
        t: [a.name for a in cfg.assistants]
        for t in principal.tenants if (cfg := services.registry.get(t)) is not None
    }
    # Every membership, and whether this process serves it (ATRIUM_DEPLOYMENT_GROUPS): where it is otherwise.
    memberships: dict[str, dict] = {}
    for t in sorted(principal.tenants):
        where = services.registry.group_of(t)
        memberships[t] = {"served_here": True, "deployment_group": where[0] if where else None,
                          "public_url": where[1].public_url if where else None}
    for t, placement in sorted(principal.elsewhere.items()):
        memberships[t] = {"served_here": False, "deployment_group": placement.group,
                          "public_url": placement.public_url}
    data["memberships"] = memberships
    # The pages of Atrium this caller may open, as every page's header lists them (the chat draws its header from
    # this: public/atrium.js part 11); each page decides again when opened.
    data["pages"] = [{"label": label, "href": href} for label, href, _ in nav_links(principal, services, "")]
    if principal.elsewhere and not principal.tenants:
        # Said to a person, as the chat says it: an address to open, not the operators' word "deployment group".
        places = sorted(principal.elsewhere.values(), key=lambda p: p.tenant_name)
        data["no_access"] = "your departments' assistants are at another address: " + "; ".join(
            f"{p.tenant_name} at " + (p.public_url or f"the address of deployment group {p.group!r} (ask your "
                                                      "administrator)")
            for p in places)
    elif not principal.tenants and not is_operator(principal):
        data["no_access"] = "you are in no tenant: " + missing_access_hint(services.registry)
    return data


@router.get("/me/usage")
def my_usage(principal: PrincipalDep, services: ServicesDep) -> dict:
    """The caller's own usage and allowance in each of their tenants (nobody else's numbers): tokens today and dollars
    this month, the limits (null: only the department's apply), what remains, when each resets."""
    assert services.member_usage is not None
    return services.member_usage.mine(principal)
