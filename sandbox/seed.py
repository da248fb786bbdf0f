"""The sandbox organization's firm: reps, clients, contacts, two years of orders, templates and
a win-back campaign, so that a newcomer's first `/campaign launch` has something to work on.

The data is made up but shaped like a residential-appraisal firm's CRM in Texas: lenders,
credit unions, brokers and AMCs (every domain under `.example`), three or four people at
each (loan officers, processors, underwriters, branch managers, vendor managers, appraisal
desk managers), and their appraisal orders over two years. Some clients went quiet more than
90 days ago: the campaign's audience is the loan officers of the stale lenders and credit
unions.

It goes in through the product's own paths: the CRM through the CSV import
(`storage.importer.import_csv`, as `salesbot import` does), the templates and the campaign
through the catalog use cases, the reps through the account functions, and the firm's
marketing and reputation (content calendar, review settings, templates, rules and reviews)
through their use cases (`sandbox/seed_marketing.py`). Everything comes
from one seeded random generator, so every sandbox holds the same firm (its dates are
relative to the day it was made). Seeding is safe to repeat: each part is made only when
the organization does not have it yet.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sqlalchemy import func, select

from domain.accounts import link_slack_user
from domain.campaigns import CampaignCreate, CampaignGoal
from domain.catalog import Catalog
from domain.clock import Clock
from domain.contacts import UserRole
from domain.deps import Deps
from domain.imports import ImportKind
from domain.outreach.common import Actor
from domain.ports import MessageClassifier
from domain.reputation_ports import SecretCipher
from domain.templates import EmailTemplateFields, TemplateCategory
from sandbox.seed_marketing import MarketingReport, seed_marketing
from storage import models as m
from storage.db import SessionFactory
from storage.importer import import_csv
from storage.uow import UnitOfWork

SEED: Final = 15
ADMIN_SLACK_ID: Final = "U0SANDBOXADM"
FIRM_NAME: Final = "Sandbox Appraisals"
FIRM_DOMAIN: Final = "sandbox-appraisals.example"
REVIEW_CHANNEL_ID: Final = "C0SBXREVIEW"
REVIEW_CHANNEL_NAME: Final = "sales-review"
CAMPAIGN_NAME: Final = "Stale lender win-back"
CADENCE_DAYS: Final = (0, 4, 10, 21)
STALE_DAYS: Final = 90
HISTORY_DAYS: Final = 730


@dataclass(frozen=True)
class SeedRep:
    """A rep of the firm: a member of the Slack stand-in and a user of the organization."""

    slack_user_id: str
    handle: str
    email: str
    name: str
    role: UserRole


REPS: Final[tuple[SeedRep, ...]] = (
    SeedRep(ADMIN_SLACK_ID, "alex.rivera", f"admin@{FIRM_DOMAIN}", "Alex Rivera", UserRole.ADMIN),
    SeedRep(
        "U0SBXMARIA1", "maria.lopez", f"maria.lopez@{FIRM_DOMAIN}", "Maria Lopez", UserRole.REP
    ),
    SeedRep("U0SBXJOSE01", "jose.ruiz", f"jose.ruiz@{FIRM_DOMAIN}", "Jose Ruiz", UserRole.REP),
)

# --- the firm's CRM, made up ------------------------------------------------------------------

_LENDERS: Final = (
    "Pinnacle Lending", "Lone Star Home Loans", "Bluebonnet Mortgage", "Hill Country Home "
    "Lending", "Alamo City Mortgage", "Gulf Coast Home Loans", "Prairie View Lending",
    "Red River Mortgage", "Cypress Creek Mortgage", "Brazos Valley Home Loans",
    "Trinity Home Lending", "Pecos Trail Mortgage", "Heritage Oak Mortgage", "Longhorn Lending",
    "Mesquite Home Finance", "Canyon Lake Mortgage", "Frontier Plains Lending",
    "Sabine River Home Loans", "Llano Estacado Mortgage", "Big Thicket Lending",
)  # fmt: skip
_CREDIT_UNIONS: Final = (
    "Capital City Credit Union", "Pecan Valley Federal Credit Union",
    "Lakeway Teachers Credit Union", "Coastal Bend Credit Union", "Piney Woods Credit Union",
    "Panhandle Educators Credit Union", "Rio Grande Valley Credit Union",
    "Central Texas Firefighters Credit Union", "Permian Basin Credit Union",
    "Guadalupe Community Credit Union", "Cross Timbers Credit Union",
    "Hill Country Teachers Credit Union",
)  # fmt: skip
_BROKERS: Final = (
    "Rio Grande Mortgage Brokers", "Keystone Home Finance", "Westlake Mortgage Partners",
    "Bayou City Mortgage Brokers", "Stockyards Mortgage Group", "Katy Prairie Mortgage",
    "Sun City Home Loans",
)  # fmt: skip
_AMCS: Final = (
    "Meridian Valuation Services", "Summit Appraisal Management", "Clearpath Valuation",
    "Anchor Point AMC", "Northstar Valuation Partners", "Lonetree Appraisal Management",
    "TrueNorth Valuations", "Bedrock Collateral Services", "Keel Valuation Group",
    "Compass Rose AMC", "Landmark Valuation Network",
)  # fmt: skip

_FIRST_NAMES: Final = (
    "Dana", "Marcus", "Kelly", "Tom", "Priya", "Luis", "Rachel", "Derek", "Ana", "Brandon",
    "Courtney", "Hector", "Megan", "Tyler", "Sofia", "Jamal", "Lauren", "Victor", "Erin",
    "Carlos", "Whitney", "Jared", "Monica", "Travis", "Yolanda", "Grant", "Alicia", "Blake",
    "Nadia", "Colby", "Renee", "Omar", "Kristen", "Dustin", "Gabriela", "Shane", "Tamara",
    "Wesley", "Leticia", "Garrett", "Brianna", "Ruben", "Heather", "Cody", "Daniela", "Kyle",
    "Janelle", "Mateo", "Stacy", "Trent",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Whitfield", "Reyes", "Brennan", "Okafor", "Patel", "Garza", "Holloway", "Nguyen",
    "Castillo", "McAllister", "Dubois", "Ramirez", "Sutton", "Villarreal", "Hargrove", "Kim",
    "Delgado", "Pruitt", "Salazar", "Whitaker", "Ochoa", "Langley", "Trevino", "Beasley",
    "Guerrero", "Harlan", "Mendoza", "Cavanaugh", "Fuentes", "Rutledge", "Barrera", "Tate",
    "Espinoza", "Kessler", "Cantu", "Boone", "Alvarado", "Meyers", "Zamora", "Crockett",
)  # fmt: skip

# (street, city, state, postal code) of subject properties.
_STREETS: Final = (
    "Barton Hills Dr", "Spicewood Springs Rd", "Brodie Ln", "Parmer Ln", "Bee Caves Rd",
    "Slaughter Ln", "Ranch Road 620", "Sunset Valley Dr", "Mopac Blvd", "Anderson Mill Rd",
    "Escarpment Blvd", "Manchaca Rd", "Riverside Dr", "Oak Hollow Ln", "Live Oak St",
    "Pecan St", "Chisholm Trl", "Limestone Ct", "Cedar Elm Way", "Wildflower Cir",
)  # fmt: skip
_CITIES: Final = (
    ("Austin", "TX", "78704"), ("Austin", "TX", "78759"), ("Round Rock", "TX", "78664"),
    ("Georgetown", "TX", "78628"), ("Cedar Park", "TX", "78613"), ("Pflugerville", "TX", "78660"),
    ("San Marcos", "TX", "78666"), ("Kyle", "TX", "78640"), ("Dripping Springs", "TX", "78620"),
    ("Leander", "TX", "78641"), ("Lakeway", "TX", "78734"), ("Buda", "TX", "78610"),
    ("New Braunfels", "TX", "78130"), ("San Antonio", "TX", "78209"),
    ("Houston", "TX", "77008"), ("Katy", "TX", "77494"), ("Dallas", "TX", "75206"),
    ("Fort Worth", "TX", "76107"), ("Waco", "TX", "76710"), ("Temple", "TX", "76502"),
)  # fmt: skip
_FEES: Final = ("450.00", "525.00", "575.00", "650.00", "725.00", "850.00")
_STATES: Final = (("TX", "America/Chicago"),) * 9 + (
    ("OK", "America/Chicago"),
    ("LA", "America/Chicago"),
    ("NM", "America/Denver"),
)
_EXTRA_TAGS: Final = ("purchase", "refinance", "fha", "va", "jumbo", "new-construction")

# (title, role code, role category, tags) of the people at each kind of client.
_Staff = tuple[tuple[str, str, str, tuple[str, ...]], ...]
_LENDER_STAFF: Final[_Staff] = (
    ("Senior Loan Officer", "LO", "loan_origination", ("top-producer",)),
    ("Loan Officer", "LO", "loan_origination", ()),
    ("Loan Processor", "LP", "processing", ()),
    ("Underwriter", "UW", "underwriting", ()),
    ("Branch Manager", "BM", "leadership", ("decision-maker",)),
)
_AMC_STAFF: Final[_Staff] = (
    ("Vendor Manager", "VM", "vendor_management", ("decision-maker",)),
    ("Appraisal Desk Manager", "ADM", "vendor_management", ("decision-maker",)),
    ("Appraisal Coordinator", "AC", "operations", ()),
    ("Quality Control Reviewer", "QC", "underwriting", ()),
)


@dataclass(frozen=True)
class SeedClient:
    """A client and how it has ordered: `last_order_days` ago (None: never)."""

    name: str
    domain: str
    client_type: str
    tag: str
    last_order_days: int | None
    orders_per_month: float


@dataclass(frozen=True)
class SeedContact:
    """A person at a client, as the contacts CSV carries them."""

    email: str
    first_name: str
    last_name: str
    title: str
    phone: str
    role_code: str
    role_category: str
    state: str
    tags: tuple[str, ...]
    lead_score: int
    timezone: str
    client_domain: str
    opted_out: str = ""
    email_status: str = ""


@dataclass(frozen=True)
class SeedOrder:
    """An appraisal order, as the orders CSV carries it."""

    order_number: str
    client_domain: str
    contact_email: str
    street: str
    city: str
    state: str
    postal_code: str
    status: str
    ordered: date
    due: date
    completed: date | None
    fee: str


@dataclass(frozen=True)
class FirmData:
    """The whole made-up CRM."""

    clients: tuple[SeedClient, ...]
    contacts: tuple[SeedContact, ...]
    orders: tuple[SeedOrder, ...]


def _domain(name: str) -> str:
    kept = "".join(ch for ch in name.lower() if ch.isalnum())
    for long, short in (("federalcreditunion", "fcu"), ("creditunion", "cu")):
        kept = kept.replace(long, short)
    return f"{kept}.example"


def make_firm(today: date, *, seed: int = SEED) -> FirmData:
    """Make the firm's CRM as of `today`; the same seed makes the same firm."""
    rng = random.Random(seed)
    clients = _clients(rng)
    contacts = _contacts(rng, clients)
    orders = _orders(rng, today, clients, contacts)
    return FirmData(clients=clients, contacts=contacts, orders=orders)


def _clients(rng: random.Random) -> tuple[SeedClient, ...]:
    kinds = (
        [(n, "lender", "lender") for n in _LENDERS]
        + [(n, "credit_union", "credit-union") for n in _CREDIT_UNIONS]
        + [(n, "broker", "broker") for n in _BROKERS]
        + [(n, "amc", "amc") for n in _AMCS]
    )
    # Which clients went quiet: nine lenders and credit unions (the campaign's audience),
    # a few brokers and AMCs; three brokers and credit unions never ordered at all.
    lending = [i for i, (_, kind, _) in enumerate(kinds) if kind in ("lender", "credit_union")]
    stale = set(rng.sample(lending, 9))
    others = [i for i, (_, kind, _) in enumerate(kinds) if kind in ("broker", "amc")]
    stale |= set(rng.sample(others, 5))
    quiet = [
        i
        for i, (_, kind, _) in enumerate(kinds)
        if kind in ("broker", "credit_union") and i not in stale
    ]
    never = set(rng.sample(quiet, 3))
    made = []
    for index, (name, kind, tag) in enumerate(kinds):
        if index in never:
            last: int | None = None
        elif index in stale:
            last = rng.randint(STALE_DAYS + 5, 480)
        else:
            last = rng.randint(0, 35)
        rate = round(rng.uniform(3.0, 12.0) if kind == "amc" else rng.uniform(0.6, 5.0), 2)
        made.append(SeedClient(name, _domain(name), kind, tag, last, rate))
    return tuple(made)


def _contacts(rng: random.Random, clients: Sequence[SeedClient]) -> tuple[SeedContact, ...]:
    made: list[SeedContact] = []
    seen: set[str] = set()
    for client in clients:
        staff: _Staff
        if client.client_type == "amc":
            staff = _AMC_STAFF
        else:
            # Two loan officers, a processor, and an underwriter or a branch manager.
            staff = (*_LENDER_STAFF[:3], rng.choice(_LENDER_STAFF[3:]))
        state, zone = rng.choice(_STATES)
        area = rng.choice(("512", "737", "210", "713", "214", "817", "254"))
        for title, role, category, role_tags in staff:
            while True:
                first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
                email = f"{first}.{last}@{client.domain}".lower()
                if email not in seen:
                    seen.add(email)
                    break
            extra = tuple(rng.sample(_EXTRA_TAGS, rng.randint(0, 2)))
            made.append(
                SeedContact(
                    email=email,
                    first_name=first,
                    last_name=last,
                    title=title,
                    phone=f"{area}-555-01{rng.randint(0, 99):02d}",
                    role_code=role,
                    role_category=category,
                    state=state,
                    tags=(client.tag, *role_tags, *extra),
                    lead_score=rng.randint(30, 95),
                    timezone=zone,
                    client_domain=client.domain,
                )
            )
    # A firm's list is never clean: a few people opted out long ago, one address bounced
    # (processors and coordinators, whom the campaign does not target).
    quiet = [i for i, c in enumerate(made) if c.role_code in ("LP", "AC")]
    for n, index in enumerate(rng.sample(quiet, 4)):
        contact = made[index]
        made[index] = (
            _with(contact, email_status="bounced")
            if n == 0
            else _with(contact, opted_out="2025-03-14")
        )
    return tuple(made)


def _with(contact: SeedContact, **changes: str) -> SeedContact:
    values = {**contact.__dict__, **changes}
    return SeedContact(**values)


def _orders(
    rng: random.Random,
    today: date,
    clients: Sequence[SeedClient],
    contacts: Sequence[SeedContact],
) -> tuple[SeedOrder, ...]:
    orderers: dict[str, list[str]] = {}
    for contact in contacts:
        if contact.role_code in ("LO", "VM", "ADM", "AC"):
            orderers.setdefault(contact.client_domain, []).append(contact.email)
    made: list[SeedOrder] = []
    serial = 1000
    start = today - timedelta(days=HISTORY_DAYS)
    for client in clients:
        if client.last_order_days is None:
            continue
        last = today - timedelta(days=client.last_order_days)
        # Orders come at the client's rate, back from its last one, over two years.
        day = last
        dates = []
        while day >= start:
            dates.append(day)
            day -= timedelta(days=max(1, round(rng.expovariate(client.orders_per_month / 30))))
        for ordered in sorted(dates):
            serial += 1
            age = (today - ordered).days
            street_no = rng.randint(100, 9899)
            city, state, postal = rng.choice(_CITIES)
            if age > 12:
                status = rng.choices(("completed", "cancelled"), weights=(19, 1))[0]
            else:
                status = rng.choice(("ordered", "assigned", "inspected", "in_review"))
            done = ordered + timedelta(days=rng.randint(4, 9))
            made.append(
                SeedOrder(
                    order_number=f"SBX-{ordered:%y%m}-{serial:05d}",
                    client_domain=client.domain,
                    contact_email=rng.choice(orderers[client.domain]),
                    street=f"{street_no} {rng.choice(_STREETS)}",
                    city=city,
                    state=state,
                    postal_code=postal,
                    status=status,
                    ordered=ordered,
                    due=ordered + timedelta(days=7),
                    completed=done if status == "completed" else None,
                    fee=rng.choice(_FEES),
                )
            )
    return tuple(made)


def _csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> io.StringIO:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return io.StringIO(buffer.getvalue(), newline="")


def clients_csv(firm: FirmData) -> io.StringIO:
    """The clients as a CRM exports them (docs/csv-import.md)."""
    return _csv(
        ("name", "domain", "client_type", "tags"),
        ((c.name, c.domain, c.client_type, f"{c.tag};texas") for c in firm.clients),
    )


def contacts_csv(firm: FirmData) -> io.StringIO:
    """The contacts as a CRM exports them."""
    header = (
        "email", "first_name", "last_name", "title", "phone", "role_code", "role_category",
        "state", "tags", "lead_score", "timezone", "client_domain", "opted_out", "email_status",
    )  # fmt: skip
    return _csv(
        header,
        (
            (
                c.email,
                c.first_name,
                c.last_name,
                c.title,
                c.phone,
                c.role_code,
                c.role_category,
                c.state,
                ";".join(c.tags),
                str(c.lead_score),
                c.timezone,
                c.client_domain,
                c.opted_out,
                c.email_status,
            )  # fmt: skip
            for c in firm.contacts
        ),
    )


def orders_csv(firm: FirmData) -> io.StringIO:
    """The appraisal orders as an order system exports them."""
    header = (
        "order_number", "client_domain", "contact_email", "property_address", "city", "state",
        "postal_code", "status", "ordered_date", "due_date", "completed_date", "fee",
    )  # fmt: skip
    return _csv(
        header,
        (
            (
                o.order_number,
                o.client_domain,
                o.contact_email,
                o.street,
                o.city,
                o.state,
                o.postal_code,
                o.status,
                o.ordered.isoformat(),
                o.due.isoformat(),
                o.completed.isoformat() if o.completed else "",
                f"${o.fee}",
            )  # fmt: skip
            for o in firm.orders
        ),
    )


# --- the campaign's copy ------------------------------------------------------------------------

TEMPLATES: Final[tuple[EmailTemplateFields, ...]] = (
    EmailTemplateFields(
        name="Win-back 1: turn times",
        category=TemplateCategory.CAMPAIGN,
        subject="{{ first_name }}, our turn times are down to 5 days",
        body="""\
Hi {{ first_name }},

It has been {{ days_since_last_order }} days since {{ company_name }} last sent us an order\
{% if last_property_address %} (the last one was {{ last_property_address }}){% endif %}, \
and I wanted to reach out personally.

A lot has changed on our side this year:
- Average turn time is down to 5 business days across Travis, Williamson and Hays counties.
- FHA, VA and jumbo files go to certified appraisers on staff, never trainees.
- Revision requests and reconsiderations of value are answered within 24 hours.

{% if orders_last_year %}You sent us {{ orders_last_year }} orders over the past year, and \
I'd{% else %}I'd{% endif %} love the chance to earn your business back. Could I send over \
our current fee schedule, or set up 15 minutes this week?

Best,
{{ rep_name }}
{{ firm_name }} | {{ rep_email }}
""",
    ),
    EmailTemplateFields(
        name="Win-back 2: fee schedule",
        category=TemplateCategory.FOLLOW_UP,
        subject="Our {{ state }} fee schedule, {{ first_name }}",
        body="""\
Hi {{ first_name }},

Following up on my note from last week. Our fees for {{ company_name }} are unchanged from \
last year: $525 for a conventional 1004, $575 for FHA and VA, $150 for a 1004D, with \
rush service available at no charge on refinances this month.

If a file is stuck with another panel, send it my way and I'll tell you same day whether \
we can hit your closing date.

{{ rep_name }}
{{ firm_name }}
""",
    ),
    EmailTemplateFields(
        name="Win-back 3: coverage",
        category=TemplateCategory.FOLLOW_UP,
        subject="Coverage update for {{ company_name }}",
        body="""\
Hi {{ first_name }},

Quick update: we added two certified residential appraisers in Williamson and Hays \
counties, so rural and new-construction files are no longer a problem for us.

Is there anyone else at {{ company_name }} I should be talking to about your appraisal \
panel?

{{ rep_name }}
""",
    ),
    EmailTemplateFields(
        name="Win-back 4: closing the loop",
        category=TemplateCategory.FOLLOW_UP,
        subject="Should I close your file, {{ first_name }}?",
        body="""\
Hi {{ first_name }},

I haven't heard back, so I'll assume the timing isn't right and stop writing for now. If \
anything changes with your panel, just reply to this email and I'll pick it up the same \
day.

Thanks for the years of business,
{{ rep_name }}
""",
    ),
)


# --- putting it in the database ----------------------------------------------------------------


@dataclass
class SeedReport:
    """What seeding found and made."""

    org_id: int
    campaign_id: int
    campaign_name: str
    review_channel_id: str
    rep_user_ids: dict[str, int] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)
    clients: int = 0
    contacts: int = 0
    orders: int = 0
    marketing: MarketingReport = field(default_factory=MarketingReport)

    @property
    def seeded_now(self) -> bool:
        """True when this run made anything."""
        return bool(self.made)


def seed_firm(
    session_factory: SessionFactory,
    *,
    org_id: int,
    clock: Clock,
    uow: Callable[[], UnitOfWork] | None = None,
    classifiers: tuple[MessageClassifier, MessageClassifier] | None = None,
    cipher: SecretCipher | None = None,
) -> SeedReport:
    """Give the organization the firm's reps, CRM, templates, campaign, content calendar and
    reviews; what it already has is kept as it is (seeding twice makes nothing the second
    time). `classifiers` read the reviews' sentiment (the model, the offline one): the
    offline model when not given. `cipher` is the reputation service's (the seed seals no
    secret with it)."""
    units = uow or (lambda: UnitOfWork(session_factory))
    now = clock.now()
    made: list[str] = []
    rep_ids = ensure_reps(units, org_id)
    admin_id = rep_ids[REPS[0].email]
    if _count(session_factory, m.Client, org_id) == 0:
        firm = make_firm(now.date())
        for kind, stream in (
            (ImportKind.CLIENTS, clients_csv(firm)),
            (ImportKind.CONTACTS, contacts_csv(firm)),
            (ImportKind.ORDERS, orders_csv(firm)),
        ):
            report = import_csv(session_factory, org_id=org_id, kind=kind, lines=stream, now=now)
            if report.fatal or report.errors:
                reasons = report.fatal or "; ".join(e.reason for e in report.sorted_errors()[:3])
                raise RuntimeError(f"the sandbox's {kind.value} did not import: {reasons}")
        made.append("crm")
    catalog = Catalog(Deps(uow=units, clock=clock))
    template_ids = _ensure_templates(catalog, units, org_id, admin_id, made)
    campaign_id = _ensure_campaign(catalog, units, org_id, admin_id, template_ids, made)
    marketing = seed_marketing(
        units,
        org_id=org_id,
        clock=clock,
        admin=Actor(org_id=org_id, user_id=admin_id, role=UserRole.ADMIN.value),
        legal_user_id=rep_ids[REPS[1].email],
        firm_name=FIRM_NAME,
        classifiers=classifiers or _offline_classifiers(),
        cipher=cipher or _throwaway_cipher(),
    )
    made += marketing.made
    return SeedReport(
        org_id=org_id,
        campaign_id=campaign_id,
        campaign_name=CAMPAIGN_NAME,
        review_channel_id=REVIEW_CHANNEL_ID,
        rep_user_ids=rep_ids,
        made=made,
        clients=_count(session_factory, m.Client, org_id),
        contacts=_count(session_factory, m.Contact, org_id),
        orders=_count(session_factory, m.AppraisalOrder, org_id),
        marketing=marketing,
    )


def _offline_classifiers() -> tuple[MessageClassifier, MessageClassifier]:
    from integrations.offline_classifier import OfflineClassifier

    offline = OfflineClassifier()
    return offline, offline


def _throwaway_cipher() -> SecretCipher:
    import secrets

    from integrations.crypto import SecretBox

    # Only a webhook secret is sealed with it, and the seed makes none.
    return SecretBox(secrets.token_urlsafe(32))


def ensure_reps(units: Callable[[], UnitOfWork], org_id: int) -> dict[str, int]:
    """Make each rep a user of the organization linked to their Slack id; return their ids."""
    ids: dict[str, int] = {}
    with units() as uow:
        for rep in REPS:
            user = link_slack_user(
                uow.users,
                org_id,
                slack_user_id=rep.slack_user_id,
                email=rep.email,
                name=rep.name,
                role=rep.role,
            )
            ids[rep.email] = user.id
        uow.commit()
    return ids


def _count(session_factory: SessionFactory, model: type[m.Base], org_id: int) -> int:
    column = model.__table__.c.org_id
    with session_factory() as session:
        return int(session.scalar(select(func.count()).where(column == org_id)) or 0)


def _ensure_templates(
    catalog: Catalog,
    uow: Callable[[], UnitOfWork],
    org_id: int,
    admin_id: int,
    made: list[str],
) -> list[int]:
    with uow() as unit:
        existing = {t.name: t.id for t in unit.templates.list(org_id, category=None)}
    ids = []
    for fields in TEMPLATES:
        if fields.name not in existing:
            existing[fields.name] = catalog.create_template(org_id, fields, created_by=admin_id).id
            made.append(f"template {fields.name}")
        ids.append(existing[fields.name])
    return ids


def _ensure_campaign(
    catalog: Catalog,
    uow: Callable[[], UnitOfWork],
    org_id: int,
    admin_id: int,
    template_ids: list[int],
    made: list[str],
) -> int:
    with uow() as unit:
        found = unit.campaigns.find_by_name(org_id, CAMPAIGN_NAME)
    if found is not None:
        return found.id
    campaign = catalog.create_campaign(
        org_id,
        CampaignCreate(
            name=CAMPAIGN_NAME,
            description=(
                "Loan officers at lenders and credit unions that have not ordered in 90 days:"
                " turn times, fees, coverage, then a polite last note."
            ),
            goal=CampaignGoal.REACTIVATION,
            target_role_codes=["LO"],
            include_tags=["lender", "credit-union"],
            stale_client_days=STALE_DAYS,
            include_never_ordered=False,
            email_template_ids=template_ids,
            cadence_days=list(CADENCE_DAYS),
            review_channel_id=REVIEW_CHANNEL_ID,
        ),
        created_by=admin_id,
    )
    made.append(f"campaign {CAMPAIGN_NAME}")
    return campaign.id


def business_moment(at: datetime, *, zone: str = "America/Chicago") -> datetime:
    """The first 10:00 on a weekday in `zone` at or after `at`, in UTC (a time the cadence
    sends in, for a sandbox that moves its clock forward)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(zone)
    local = at.astimezone(tz)
    candidate = datetime.combine(local.date(), time(10, 0), tzinfo=tz)
    if candidate < local:
        candidate += timedelta(days=1)
    while candidate.weekday() >= 5:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)
