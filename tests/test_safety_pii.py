"""PII detection and the actions on what it finds: the scanner, its windows, the transforms, the body copy."""

from __future__ import annotations

import re

import pytest

from gateway.safety.pii import PiiScanner, around, windows
from gateway.safety.slots import replaced, text_slots
from gateway.safety.transform import Pseudonyms, Transformer, mask

ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS"]


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(ENTITIES, 0.4, allow=["support@acme.example.com"])


def found(scanner: PiiScanner, text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in scanner.analyze(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("write to dana.w@northwind-corp.com today", "EMAIL_ADDRESS", "dana.w@northwind-corp.com"),
        ("call me on +44 20 7946 0958 tomorrow", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("my number is (415) 555-0132 x204 thanks", "PHONE_NUMBER", "(415) 555-0132 x204"),
        ("card 4539 1488 0343 6467 expired", "CREDIT_CARD", "4539 1488 0343 6467"),
        ("new mastercard 2223 0031 2200 3222 works", "CREDIT_CARD", "2223 0031 2200 3222"),
        ("SSN 536-22-8471 on file", "US_SSN", "536-22-8471"),
        ("pay to DE89 3704 0044 0532 0130 00 please", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
        ("blocked 203.0.113.77 at the edge", "IP_ADDRESS", "203.0.113.77"),
        ("host 2001:db8:85a3::8a2e:370:7334 is up", "IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    ],
)
def test_finds_each_entity_with_its_exact_span(scanner, text, entity, value):
    assert (entity, value) in found(scanner, text)


@pytest.mark.parametrize(
    "text",
    [
        "order ORD-20240315-88412 shipped, ticket #48213377",
        "request id 3f2a9c1b-8d4e-4f6a-9b2c-1d3e5f7a9b0c and commit 9fceb02d0ae5",
        "Chrome 121.0.2016.142 on version 3.11.7, build 2024.3.15",
        "at 2019-10-28T16:09:09.072550Z, timestamp 1783606031",
        "for (int i = 0; i < 4096; i++) buf[i] = 0x7f; port 8080 pid 31337",
        "amount $73,943.83, invoice INV-000123, PO 4513608035",
        "SSN-looking ITIN 912-70-1234 is not an SSN",
        "the support address support@acme.example.com is public",
    ],
)
def test_hard_negatives_are_not_reported(scanner, text):
    assert found(scanner, text) == []


def test_context_words_raise_weak_findings_over_the_threshold(scanner):
    assert found(scanner, "reference 536228471 attached") == []  # bare nine digits: Presidio's very weak SSN
    assert found(scanner, "social security number 536228471") == [("US_SSN", "536228471")]
    assert found(scanner, "id 4155550132 attached") == []  # bare digits are rarely a phone number
    assert found(scanner, "call 4155550132 after five") == [("PHONE_NUMBER", "4155550132")]


def test_windows_cover_whole_tokens_with_one_token_of_margin():
    text = "aa bb  cc dd"
    assert text[slice(*around(text, 3, 5))] == "aa bb  cc"
    assert text[slice(*around(text, 0, 2))] == "aa bb"
    digits = re.compile(r"\d+")
    assert windows("no digits here", digits) == []
    text = "x call 415 555 0132 now, later 42 end"
    assert [text[a:b] for a, b in windows(text, digits)] == ["call 415 555 0132 now,", "later 42 end"]


def test_a_scan_past_its_deadline_raises(scanner):
    with pytest.raises(TimeoutError):
        scanner.analyze("mail a@b.example.com " * 50, deadline=0.0)


def test_actions_redact_mask_hash_and_pseudonymize(scanner):
    text = "mail ann@example.org or ann@example.org, card 4539 1488 0343 6467"
    findings = scanner.analyze(text)
    actions = {"EMAIL_ADDRESS": "pseudonymize", "CREDIT_CARD": "mask"}
    pseudonyms = Pseudonyms()
    out = Transformer({**dict.fromkeys(ENTITIES, "redact"), **actions}, b"k").apply(text, findings, pseudonyms)
    assert out == "mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_1>, card **** **** **** 6467"
    assert pseudonyms.values == {"<EMAIL_ADDRESS_1>": "ann@example.org"}
    hashed = Transformer(dict.fromkeys(ENTITIES, "hash"), b"k").apply(text, findings, Pseudonyms())
    assert hashed.count("<EMAIL_ADDRESS:") == 2 and "ann@" not in hashed
    other_key = Transformer(dict.fromkeys(ENTITIES, "hash"), b"other").apply(text, findings, Pseudonyms())
    assert other_key != hashed, "the hash is keyed, so small value spaces cannot be reversed by anyone without the key"
    assert Transformer(dict.fromkeys(ENTITIES, "detect"), b"k").apply(text, findings, Pseudonyms()) == text
    assert mask("ab-12") == "ab-12" and mask("abcdef") == "**cdef"


def test_slots_cover_user_text_and_the_copy_leaves_the_original_untouched():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
        ],
    }
    slots = list(text_slots(body))
    assert [(s.path, s.from_user) for s in slots] == [
        (("messages", 0, "content"), False),
        (("messages", 1, "content", 0, "text"), True),
        (("messages", 2, "tool_calls", 0, "function", "arguments"), False),
    ]
    copy = replaced(body, {("messages", 1, "content", 0, "text"): "HI"})
    assert copy["messages"][1]["content"][0]["text"] == "HI" and body["messages"][1]["content"][0]["text"] == "hi"
    assert copy["messages"][0] is body["messages"][0], "untouched parts are shared, not copied"
    assert [s.path for s in text_slots({"prompt": ["a", 1, "b"], "input": "c"})] == [("prompt", 0), ("prompt", 2), ("input",)]


def test_short_and_long_texts_find_the_same_values(scanner):
    """A short text is scanned whole, a long one in windows around triggers: the findings must not differ."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from safety_data import pii_samples

    filler = "Quarterly notes follow; nothing in this paragraph is personal data at all. " * 80
    for text, _ in pii_samples(300, seed=5):
        short = [(f.entity, text[f.start : f.end]) for f in scanner.analyze(text)]
        padded = filler + text + " " + filler
        long = [(f.entity, padded[f.start : f.end]) for f in scanner.analyze(padded)]
        assert long == short, text


def test_a_value_at_the_end_of_a_run_of_digit_groups_is_found_in_long_texts_too(scanner):
    """A trigger match can stop a group or two before a value that ends the run; the window must not."""
    import random

    rng = random.Random(11)
    values = ["2300 5457 6624 0268", "4539 1488 0343 6467", "536-22-8471", "536 22 8471", "+44 20 7946 0958"]
    filler = "Quarterly notes follow; nothing in this paragraph is personal data at all. " * 80
    for _ in range(400):
        groups = [str(rng.randrange(10 ** rng.randint(0, 4), 10 ** rng.randint(5, 10))) for _ in range(rng.randint(1, 3))]
        text = "ref " + rng.choice(" -").join(groups) + rng.choice(" -") + rng.choice(values) + " ok"
        padded = filler + text + " " + filler
        long = [(f.entity, padded[f.start : f.end]) for f in scanner.analyze(padded)]
        assert long == found(scanner, text), text


def test_lower_case_iban_and_phone_groups_split_by_a_slash(scanner):
    assert ("IBAN_CODE", "de89370400440532013000") in found(scanner, "iban de89370400440532013000 please")
    text = "call 020 7946 0958/415-555-0132 today"
    assert [v for e, v in found(scanner, text) if e == "PHONE_NUMBER"] == ["020 7946 0958", "415-555-0132"]


def test_patterns_with_unbounded_repetition_still_stop_at_the_deadline():
    from time import perf_counter

    url_scanner = PiiScanner(["URL"], 0.4)
    started = perf_counter()
    with pytest.raises(TimeoutError):
        url_scanner.analyze("see www." + "a." * 1500 + " now", deadline=perf_counter() + 0.2)
    assert perf_counter() - started < 2.0


def test_the_phone_recognizer_itself_stops_at_the_deadline():
    from time import perf_counter

    phones = PiiScanner(["PHONE_NUMBER"], 0.4)  # the only recognizer: no later check between recognizers
    with pytest.raises(TimeoutError):
        phones.analyze("call 415-555-0132, " * 50_000, deadline=perf_counter() + 0.01)
