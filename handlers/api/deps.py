"""What every API route needs: the services, the caller's identity, a unit of work."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from domain.accounts import Accounts, TokenIdentity
from domain.clock import Clock
from domain.contacts import TokenScope, UserRole
from domain.errors import NotPermitted, SalesbotError
from domain.outreach import Actor
from domain.suppression import Suppression
from storage.db import SessionFactory
from storage.uow import UnitOfWork


@dataclass
class Services:
    """Long-lived collaborators, built once by the composition root."""

    engine: Engine
    session_factory: SessionFactory
    clock: Clock
    # Built from the two above, so that every builder of Services (the app, the tests)
    # gets the same account use cases.
    accounts: Accounts = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = Accounts(uow=lambda: UnitOfWork(self.session_factory), clock=self.clock)


class Unauthorized(SalesbotError):
    """No valid bearer token."""

    code = "unauthorized"


def get_services(request: Request) -> Services:
    """Return the services the app was built with."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


# Declares the `bearerAuth` scheme in the OpenAPI document (the Authorize button of
# /docs) and marks every route that authenticates; get_identity reads the header itself
# to say what is wrong with it.
bearer_auth = HTTPBearer(
    scheme_name="bearerAuth",
    description="An API token from `salesbot token create`, sent as `Bearer <token>`.",
    auto_error=False,
)


def get_identity(
    request: Request,
    services: ServicesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_auth)] = None,
) -> TokenIdentity:
    """Authenticate the bearer token; writes need a token with the write scope."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <token>'")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("malformed Authorization header; expected 'Bearer <token>'")
    identity = services.accounts.authenticate_token(secret.strip())
    if identity is None:
        raise Unauthorized("invalid or revoked API token")
    if request.method not in ("GET", "HEAD", "OPTIONS") and identity.scope != TokenScope.WRITE:
        raise NotPermitted("this API token is read-only; use a token with the write scope")
    return identity


IdentityDep = Annotated[TokenIdentity, Depends(get_identity)]


def get_actor(identity: IdentityDep, services: ServicesDep) -> Actor | None:
    """Return the user a token acts for, with their role; None for a token not tied to a
    user (an integration acting for the whole organization)."""
    if identity.user_id is None:
        return None
    user = services.accounts.find_user(identity.org_id, identity.user_id)
    role = (user.role if user is not None else None) or UserRole.REP
    return Actor(org_id=identity.org_id, user_id=identity.user_id, role=role)


ActorDep = Annotated[Actor | None, Depends(get_actor)]


def get_uow(services: ServicesDep) -> UnitOfWork:
    """Return a fresh unit of work for one use case."""
    return UnitOfWork(services.session_factory)


UowDep = Annotated[UnitOfWork, Depends(get_uow)]


def get_suppression(request: Request) -> Suppression:
    """Return the opt-out use cases the app was built with."""
    suppression: Suppression = request.app.state.runtime.suppression
    return suppression


SuppressionDep = Annotated[Suppression, Depends(get_suppression)]
