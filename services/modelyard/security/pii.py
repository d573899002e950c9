"""Detectors of personal data and secrets in free text, for the gateway's redaction stage.

Each built-in type is a candidate regex plus, where a pattern alone would take
too much, a check of the candidate itself: card numbers pass Luhn, IBANs
mod-97 (ISO 13616) and their country's length, IP addresses parse
(`ipaddress`), phone numbers have a plausible digit count and either an
international prefix or a national shape (a trunk 0, or NANP's 3-3-4), and a
long token without a known prefix counts as a secret only when it mixes
upper case, lower case and digits with high entropy. Dates, version numbers,
order ids and hex digests are left alone by construction (see the precision
test in tests/security/test_pii.py).

`find_pii` runs the detectors in priority order (custom patterns first, the
generic high-entropy token last) and a later detector never takes text an
earlier one claimed, so a card number is one card, not a card and a phone.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from modelyard.config.security import (
    BUILT_IN_TYPES,
    CARD,
    EMAIL,
    IBAN,
    IPV4,
    IPV6,
    PHONE,
    SECRET,
)


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One finding: `text[start:end]` is a value of `kind` (a built-in type or a custom name)."""

    kind: str
    start: int
    end: int
    value: str


@dataclass(frozen=True, slots=True)
class Detector:
    """A candidate pattern and the check a candidate must pass; the value is group ``v``
    when the pattern has one (``Bearer <v>``), else the whole match."""

    kind: str
    pattern: re.Pattern[str]
    accepts: Callable[[str], bool] = lambda value: True

    def matches(self, text: str) -> Iterable[PiiMatch]:
        for m in self.pattern.finditer(text):
            group = "v" if "v" in self.pattern.groupindex else 0
            start, end = m.span(group)
            value = m.group(group)
            if start < end and self.accepts(value):
                yield PiiMatch(self.kind, start, end, value)


# ---- checks -----------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (ISO/IEC 7812) is 0."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    separators = set(re.findall(r"[ -]", value))
    return len(separators) <= 1 and luhn_valid(digits)


# ISO 13616 lengths of the IBANs of the countries most often met; another country's
# IBAN is taken at any length from 15 to 34 when mod-97 holds.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GI": 23, "GL": 18, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IS": 26, "IT": 27, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "QA": 29, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
    "UA": 29,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """`compact` (no spaces, upper case) is an IBAN: its length, then mod-97 == 1."""
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_matches(text: str) -> Iterable[PiiMatch]:
    """IBANs, printed compact or in groups of four; a candidate that runs on into the next
    word is tried shorter, group by group, so the IBAN's own length is what is taken."""
    for m in _IBAN.finditer(text):
        value = m.group(0)
        cut = len(value)
        while cut > 0:
            candidate = value[:cut].rstrip()
            if iban_valid(candidate.replace(" ", "")):
                start = m.start()
                yield PiiMatch(IBAN, start, start + len(candidate), candidate)
                break
            cut = value.rfind(" ", 0, cut) if " " in value[:cut] else -1
            if cut <= 0:
                break


def _ipv6(value: str) -> bool:
    if value.count(":") < 2 or ("::" not in value and value.count(":") != 7):
        return False
    if sum(1 for group in value.split(":") if group) < 2:
        return False  # "::" or "::1" name no host anyone could be found at
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _phone(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if value.startswith("+") or value.startswith("00"):
        return 8 <= len(digits) <= 15
    if not 9 <= len(digits) <= 12:
        return False
    if digits.startswith("0"):  # a national number with its trunk prefix (UK, DE, FR, ...)
        return bool(re.search(r"[\s().-]", value)) or len(digits) >= 10
    # NANP without +1: (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567
    return bool(_NANP.fullmatch(value))


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s character distribution."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _high_entropy(value: str) -> bool:
    classes = sum(
        bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d")
    )  # hex digests and uuids have two: left alone
    return classes == 3 and shannon_entropy(value) >= 4.0


# ---- patterns ---------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}(?![\w-])"
)
# A whole run of digits and single separators, taken once (possessive: no backtracking
# into it); `_card` then wants 13 to 19 digits of it.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d)++")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\w]|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" + _OCTET + r"(?:\." + _OCTET + r"){3}"
    + r"|[0-9A-Fa-f]{1,4})?(?:%[0-9A-Za-z]+)?(?![\w:]|\.\d)"
)  # fmt: skip
_PHONE = re.compile(
    r"(?<![\w+.-])(?:(?:\+|00)\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,5}){1,5}"
    r"(?![\w-]|\.\d)"
)
_NANP = re.compile(r"(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}")
_SECRETS = (
    r"(?<![\w-])sk-(?:[a-z]+-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic (sk-ant-...), sk-proj-
    r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])",  # AWS access key ids
    r"(?i:bearer)\s+(?P<v>[A-Za-z0-9._~+/-]{16,}=*)",  # the token of an Authorization header
    r"(?<!\w)gh[pousr]_[A-Za-z0-9]{36,}",  # GitHub
    r"(?<!\w)xox[abprs]-[A-Za-z0-9-]{10,}",  # Slack
    r"(?<!\w)AIza[0-9A-Za-z_-]{35}",  # Google API keys
    r"(?<![\w-])eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}",  # JWTs
)
_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9_+/=-]{32,}(?![\w+/=-])")

_BUILT_IN: dict[str, tuple[Detector, ...]] = {
    SECRET: tuple(Detector(SECRET, re.compile(p)) for p in _SECRETS),
    EMAIL: (Detector(EMAIL, _EMAIL),),
    IBAN: (),  # `_iban_matches`: its candidates are cut back, not merely checked
    CARD: (Detector(CARD, _CARD, _card),),
    IPV6: (Detector(IPV6, _IPV6, _ipv6),),
    IPV4: (Detector(IPV4, _IPV4),),
    PHONE: (Detector(PHONE, _PHONE, _phone),),
}
_HIGH_ENTROPY = Detector(SECRET, _TOKEN, _high_entropy)


@dataclass(frozen=True, slots=True)
class PiiDetectors:
    """The detectors of the enabled built-in types, and custom (name, pattern) pairs."""

    types: frozenset[str] = frozenset(BUILT_IN_TYPES)
    custom: tuple[tuple[str, re.Pattern[str]], ...] = ()

    def find(self, text: str) -> list[PiiMatch]:
        """The findings in `text`, in text order, none overlapping another."""
        claimed: list[PiiMatch] = []  # in text order, none overlapping: bisected
        starts: list[int] = []
        for source in self._sources():
            for found in source(text):
                i = bisect.bisect_left(starts, found.start)
                if i < len(claimed) and claimed[i].start < found.end:
                    continue  # the next claimed span starts inside this one
                if i > 0 and claimed[i - 1].end > found.start:
                    continue  # the previous one runs into it
                claimed.insert(i, found)
                starts.insert(i, found.start)
        return claimed

    def _sources(self) -> Iterable[Callable[[str], Iterable[PiiMatch]]]:
        for name, pattern in self.custom:
            yield Detector(name, pattern).matches
        for kind in BUILT_IN_TYPES_BY_PRIORITY:
            if kind not in self.types:
                continue
            if kind == IBAN:
                yield _iban_matches
            for detector in _BUILT_IN[kind]:
                yield detector.matches
        if SECRET in self.types:
            yield _HIGH_ENTROPY.matches


# Secrets before emails (a token may hold an @), IBANs before cards (digits in both),
# IPv6 before IPv4 (an embedded v4 tail), phones after every other kind of digits.
BUILT_IN_TYPES_BY_PRIORITY: Sequence[str] = (SECRET, EMAIL, IBAN, CARD, IPV6, IPV4, PHONE)


def find_pii(text: str, detectors: PiiDetectors | None = None) -> list[PiiMatch]:
    """Every built-in type's findings in `text` (or those of `detectors`)."""
    return (detectors or PiiDetectors()).find(text)
