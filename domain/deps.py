"""What every use-case service holds, built once by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain.clock import Clock

# The unit-of-work port a service uses (CatalogUnitOfWork, OutreachUnitOfWork, ...): one
# Deps built on the storage unit of work serves them all, since it implements each.
UnitOfWorkT = TypeVar("UnitOfWorkT", covariant=True)


@dataclass(frozen=True)
class Deps(Generic[UnitOfWorkT]):
    """A fresh unit of work for each use case, and the clock.

    Services take this and, by name, the other ports they use (mailer, notifier, ...),
    so adding a shared collaborator changes one class, not every constructor.
    """

    uow: Callable[[], UnitOfWorkT]
    clock: Clock
