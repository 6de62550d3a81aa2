"""Labeled evaluation sets for the safety filters, generated deterministically (seeded Faker + templates).

PII: prompts with exact gold spans of valid values (Luhn-valid cards, SSNs outside the reserved ranges, IBANs
with correct check digits, phone numbers phonenumbers calls valid, real TLDs), mixed with hard negatives that
look numeric or structured but are not personal data (order IDs, UUIDs, versions, timestamps, code, amounts).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import phonenumbers
from faker import Faker

Sample = tuple[str, list[tuple[int, int, str]]]

ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS")

_TEMPLATES = [
    "Hi team, the customer asked us to update their contact to {v} before Friday's renewal call.",
    "Can you draft a polite reply to the client? Their details: {v}.",
    "Summarize this ticket: user reports login failures, reachable at {v}, priority high.",
    "Please check why the payment with {v} was declined yesterday afternoon.",
    "Log entry: request from {v} rejected by the firewall rule set.",
    "Forwarding the note from accounts: {v} needs to be verified against the invoice.",
    "Write a short follow-up email. Mention that we have {v} on file and ask them to confirm.",
    "{v} - this is what the caller gave as their details, is it complete?",
    "Translate into German: 'Your record ({v}) has been updated successfully.'",
    "The onboarding form listed {v}; flag anything that looks inconsistent.",
    "Customer wrote: \"my details are {v}, please call back asap\" - classify the sentiment.",
    "Extract the action items from the meeting notes. Notes: Sarah to follow up with {v} on pricing.",
]
_LABELS = {
    "EMAIL_ADDRESS": ["email", "mail", "e-mail address", "contact"],
    "PHONE_NUMBER": ["phone", "mobile", "cell", "number", "tel"],
    "CREDIT_CARD": ["card", "credit card", "visa", "payment card"],
    "US_SSN": ["SSN", "social security number", "ssn"],
    "IBAN_CODE": ["IBAN", "bank account", "account"],
    "IP_ADDRESS": ["IP", "host", "server", "client address"],
}
_PHONE_LOCALES = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR", "en_IN": "IN", "pt_BR": "BR", "en_CA": "CA"}
_IBAN_LOCALES = ("de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT")


def _negatives(fake: Faker, rng: random.Random) -> list[str]:
    return [
        f"order ORD-{rng.randint(2019, 2025)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}-{rng.randint(10000, 99999)}",
        f"ticket #{rng.randint(100000, 99999999)}",
        f"request id {fake.uuid4()}",
        f"version {rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 300)}",
        f"Chrome {rng.randint(100, 130)}.0.{rng.randint(1000, 9999)}.{rng.randint(10, 250)}",
        f"at {fake.iso8601()}Z",
        f"timestamp {rng.randint(1_500_000_000, 1_800_000_000)}",
        f"on {rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(2019, 2026)} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
        f"`for (int i = 0; i < {rng.randint(8, 4096)}; i++) buf[i] = 0x{rng.randint(0, 255):02x};`",
        f"listening on port {rng.randint(1024, 65535)} with pid {rng.randint(100, 99999)}",
        f"commit {fake.sha1()[:12]}",
        f"amount ${rng.randint(1, 99999):,}.{rng.randint(0, 99):02d}",
        f"invoice INV-{rng.randint(0, 999999):06d}",
        f"SKU {rng.choice('ABCDEFGH')}{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        f"tracking 1Z{rng.randint(100, 999)}AA1{rng.randint(10**9, 10**10 - 1)}",
        f"zip {rng.randint(10000, 99999)}",
        f"build {rng.randint(2019, 2026)}.{rng.randint(1, 12)}.{rng.randint(1, 28)}",
        f"PO {rng.randint(4500000000, 4599999999)}",
        f"sha256 {fake.sha256()[:32]}",
        f"latency p99 {rng.randint(10, 900)}ms over {rng.randint(1000, 90000)} requests",
    ]


def _value(entity: str, fake: Faker, rng: random.Random, fakers: dict[str, Faker]) -> str:
    if entity == "EMAIL_ADDRESS":
        return rng.choice([fake.email, fake.company_email, fake.free_email])()
    if entity == "PHONE_NUMBER":
        while True:
            locale = rng.choice(list(_PHONE_LOCALES))
            number = fakers[locale].phone_number()
            try:
                parsed = phonenumbers.parse(number, _PHONE_LOCALES[locale])
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return number
    if entity == "CREDIT_CARD":
        number = fake.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "amex", "discover"]))
        style = rng.random()
        if style < 0.35 and len(number) == 16:
            return " ".join(number[i : i + 4] for i in range(0, 16, 4))
        if style < 0.5 and len(number) == 16:
            return "-".join(number[i : i + 4] for i in range(0, 16, 4))
        return number
    if entity == "US_SSN":
        ssn = fake.ssn()
        return ssn if rng.random() < 0.8 else ssn.replace("-", " ")
    if entity == "IBAN_CODE":
        iban = fakers[rng.choice(_IBAN_LOCALES)].iban()
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.4 else iban
    if entity == "IP_ADDRESS":
        return fake.ipv4_public() if rng.random() < 0.75 else fake.ipv6()
    raise ValueError(entity)


def pii_samples(count: int = 1200, seed: int = 7) -> list[Sample]:
    """Prompts with 0-2 PII values (gold spans) and 0-2 hard negatives each; about one in six has no PII."""
    rng = random.Random(seed)
    Faker.seed(seed)
    fake = Faker("en_US")
    fakers = {locale: Faker(locale) for locale in {*_PHONE_LOCALES, *_IBAN_LOCALES}}
    samples: list[Sample] = []
    for i in range(count):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        parts: list[str | tuple[str, str]] = []
        entities = rng.sample(ENTITIES, rng.choice([0, 1, 1, 1, 2, 2]))
        for entity in entities:
            parts.append(f"{rng.choice(_LABELS[entity])} ")
            parts.append((entity, _value(entity, fake, rng, fakers)))
            parts.append(", ")
        for negative in rng.sample(_negatives(fake, rng), rng.choice([0, 1, 2, 2])):
            parts.append(negative + ", ")
        if not parts:
            parts.append("nothing sensitive here, ")
        head, tail = template.split("{v}")
        text, spans = head, []
        for part in parts:
            if isinstance(part, tuple):
                spans.append((len(text), len(text) + len(part[1]), part[0]))
                text += part[1]
            else:
                text += part
        text = text.rstrip(", ") + tail
        samples.append((text, spans))
    return samples


def typical_prompts(count: int = 200, seed: int = 11, size: int = 1024) -> list[str]:
    """About `size` characters of ordinary business text each, with an occasional number or address in it."""
    rng = random.Random(seed)
    Faker.seed(seed)
    fake = Faker("en_US")
    extras: list[Callable[[], str]] = [
        lambda: f"The Q{rng.randint(1, 4)} budget is ${rng.randint(10, 900)}k.",
        lambda: f"Ticket #{rng.randint(10000, 99999)} is still open.",
        lambda: f"Send it to {fake.company_email()} when done.",
        lambda: f"Meeting on {fake.date()} at {rng.randint(9, 17)}:00.",
    ]
    prompts = []
    for _ in range(count):
        text = rng.choice(["Summarize the following for an executive audience. ", "Rewrite this more clearly: ", "Answer the customer: "])
        while len(text) < size:
            text += fake.paragraph(nb_sentences=4) + " "
            if rng.random() < 0.3:
                text += rng.choice(extras)() + " "
        prompts.append(text[:size])
    return prompts
