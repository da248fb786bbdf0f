"""The unit of work: the single owner of a transaction."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.orm import Session

from storage.audience import AudienceRepo
from storage.campaigns import CampaignRepo
from storage.cards import CardRepo
from storage.contacts import ContactContextRepo
from storage.db import SessionFactory
from storage.events import EventKeys
from storage.jobs import EnrollmentRepo, JobRepo, TaskRepo
from storage.templates import TemplateRepo


class UnitOfWork:
    """Opens a session, hands it to repositories, commits once or rolls back.

    Use cases do `with uow: ...; uow.commit()`. Leaving the block without a commit
    rolls everything back. Nothing else in the code base commits.
    """

    campaigns: CampaignRepo
    templates: TemplateRepo
    audience: AudienceRepo
    jobs: JobRepo
    tasks: TaskRepo
    enrollments: EnrollmentRepo
    cards: CardRepo
    contexts: ContactContextRepo
    events: EventKeys

    def __init__(self, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """The session of the open unit of work."""
        if self._session is None:
            raise RuntimeError("unit of work used outside its `with` block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        if self._session is not None:
            raise RuntimeError("unit of work is not re-entrant")
        session = self._session_factory()
        self._session = session
        self.campaigns = CampaignRepo(session)
        self.templates = TemplateRepo(session)
        self.audience = AudienceRepo(session)
        self.jobs = JobRepo(session)
        self.tasks = TaskRepo(session)
        self.enrollments = EnrollmentRepo(session)
        self.cards = CardRepo(session)
        self.contexts = ContactContextRepo(session)
        self.events = EventKeys(session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        try:
            session.rollback()
        finally:
            session.close()
            self._session = None

    def commit(self) -> None:
        """Commit the transaction."""
        self.session.commit()
