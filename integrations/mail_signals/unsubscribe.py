"""Unsubscribe requests: mail to our List-Unsubscribe address, or words that ask for it.

Words are read in the subject and in the message's new text only (the quoted outreach below
a reply carries our own unsubscribe footer), line by line, in English, Spanish, French and
German. A match does not count when the line reads like a footer or an instruction ("click
here to unsubscribe", "si vous souhaitez vous désabonner") or when a negation comes just
before it ("please don't remove me", "no quiero darme de baja", "bitte nicht abmelden").
"""

from __future__ import annotations

import re
from typing import Final

from domain.detection import DetectionContext, UnsubscribeRequest, UnsubscribeVia
from domain.unsubscribe_address import parse_unsubscribe_address
from integrations.mail_signals._view import MAX_LINE_CHARS, MailView

MAX_LINES: Final = 80

# Where a list is named, the words must name a mailing list: "remove me from the cc",
# "dar de baja la orden 123" or "vom Termin abmelden" ask for something else.
_LIST_EN = r"(?:your|the|this|all|any) (?:mailing |e-?mail |distribution |contact |marketing )?"
_LIST_EN += r"(?:list|lists|database|mailings?)"
_LIST_DE = r"(?:newsletter|verteiler|e-?mail-?verteiler|mailing|mailingliste|liste|e-?mail-?liste)"
_REQUEST = re.compile(
    # English
    r"\bunsubscribe(?: me)?\b|\bplease remove (?:me|my (?:e-?mail|address|name))\W*$"
    rf"|\b(?:remove|take) (?:me|us|my (?:e-?mail|address|name)) (?:off|from) {_LIST_EN}"
    rf"|\boff {_LIST_EN}\b|\bstop (?:e-?mailing|emailing|contacting|writing to) me\b"
    r"|\bstop sending (?:me )?(?:these|your|e-?mails|messages)\b"
    r"|\b(?:do not|don't|dont) (?:e-?mail|contact|write to) me (?:again|anymore|any more)"
    r"|\bno more (?:e-?mails|messages)\b|\bopt me out\b|\b(?:want|like|wish) to opt out\b"
    # Spanish
    r"|\bdar(?:me|nos) de baja\b|\bden(?:me|nos) de baja\b"
    r"|\bdar de baja (?:mi|este|nuestro) (?:correo|e-?mail|dirección|direccion|suscripción)"
    r"|\b(?:elimin|quit|saqu|borr)(?:en|ar|e|enme|arme|ame|eme)(?:me)? de (?:su|la|esta|sus) "
    r"(?:lista|base)|\bno me (?:envíen|envien|manden|escriban) más\b"
    r"|\bdejen de (?:enviarme|escribirme|mandarme|contactarme)\b"
    r"|\b(?:cancelar|anular) (?:mi |la )?suscripci[oó]n\b|\bdesuscribir(?:me)?\b"
    # French
    r"|\bd[ée]sabonn(?:er|ez|e)(?:[- ]moi)?\b|\bd[ée]sinscri(?:re|vez|s|ption)(?:[- ]moi)?\b"
    r"|\b(?:retirez|supprimez|enlevez|rayez)[- ]moi de (?:votre|la|cette|vos) "
    r"(?:liste|fichier|base)|\bne (?:plus|pas|veux plus|souhaite plus) recevoir (?:vos|de|ces|les)"
    r"|\b(?:arrêtez|arretez|cessez) de m'(?:envoyer|écrire|ecrire|contacter)\b"
    r"|\bne m'(?:envoyez|écrivez|ecrivez) plus\b"
    # German
    rf"|\b(?:vom|von (?:ihrem|dem|diesem|ihrer|der)) {_LIST_DE}\b.{{0,30}}"
    r"\b(?:abmelden|austragen)\b"
    r"|\bmelden sie mich (?:bitte )?(?:\w+ )?ab\b|\btragen sie mich (?:bitte )?(?:\w+ )?aus\b"
    r"|\b(?:newsletter|e-?mails|mails|werbung) abbestellen\b|\bbitte um abmeldung\b"
    rf"|\baus (?:ihrem|dem|ihrer|der) {_LIST_DE}(?: \w+){{0,2}} "
    r"(?:entfernen|streichen|nehmen|löschen|austragen)\b"
    r"|\b(?:keine|nicht mehr) (?:weiteren )?(?:e-?mails|nachrichten|mails|werbung)"
    r"(?: mehr)?(?: \w+)? (?:schicken|senden|zusenden|erhalten|bekommen)\b"
    r"|\bhören sie auf,? mir\b",
    re.IGNORECASE,
)
# A line that is whole by itself a request: "STOP", "Unsubscribe", "BAJA", "Abmelden".
_BARE = re.compile(
    r"^\W*(?:stop|unsubscribe|remove|remove me|baja|de baja|désabonner|desabonner|abmelden"
    r"|abmeldung)\W*$",
    re.IGNORECASE,
)
_FOOTER = re.compile(
    r"https?:|www\.|click|klicken|cliquez|clic|link|enlace|lien\b"
    r"|\bto unsubscribe\b|\b(?:you can|you may|how to|where to|option to) (?:unsubscribe|opt out)"
    r"|\bif you (?:no longer |do not |don't )?(?:wish|want|would like|prefer)"
    r"|\byou (?:are )?receiv(?:e|ed|ing) this|this (?:e-?mail|message) was sent"
    r"|\bunsubscribe (?:here|at any time|anytime|from this list|link)\b|preferences"
    r"|\bpour (?:vous )?(?:désabonner|désinscrire|ne plus recevoir)"
    r"|si vous (?:souhaitez|désirez|voulez)"
    r"|\bpara (?:darse|dar) de baja|si (?:usted )?(?:desea|quiere|prefiere)"
    r"|\bum (?:sich|den newsletter) ab|wenn sie (?:\w+ )?(?:keine|nicht)|falls sie",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"(?:\bnot|\bnever|n't|\bno need to|\bno|\bnicht|\bkein(?:e|en)?|\bne|\bpas|\bni"
    r"|\bnunca|\bjamais)\W+(?:\w+\W+){0,3}$",
    re.IGNORECASE,
)
_FOLLOWING_NEGATION = re.compile(r"^\W*(?:\w+\W+){0,2}(?:pas|nicht)\b", re.IGNORECASE)
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|aw|wg|fw|fwd|tr|rv|r)\s*:\s*)+", re.IGNORECASE)


def _request_in(line: str) -> str | None:
    line = line.strip()
    if not line or line.startswith(">"):
        return None
    line = line[:MAX_LINE_CHARS]
    if _BARE.match(line):
        return line
    if _FOOTER.search(line):
        return None
    for match in _REQUEST.finditer(line):
        before = line[max(0, match.start() - 40) : match.start()]
        after = line[match.end() : match.end() + 20]
        if _NEGATION.search(before) or _FOLLOWING_NEGATION.search(after):
            continue
        return line
    return None


def detect_unsubscribe(view: MailView, context: DetectionContext) -> UnsubscribeRequest | None:
    """Return the unsubscribe request a person's message makes, or None."""
    mailboxes = context.unsubscribe_mailboxes
    if mailboxes:
        for address in sorted(view.recipient_addresses):
            token = parse_unsubscribe_address(address, mailboxes=mailboxes)
            if token is not None:
                return UnsubscribeRequest(via=UnsubscribeVia.ADDRESS, token=token)
    subject = _SUBJECT_PREFIX.sub("", view.subject)
    lines = [subject, *view.new_text.splitlines()[:MAX_LINES]]
    for line in lines:
        phrase = _request_in(line)
        if phrase is not None:
            return UnsubscribeRequest(via=UnsubscribeVia.TEXT, phrase=phrase[:200])
    return None
