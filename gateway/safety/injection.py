"""Prompt-injection and jailbreak detection: heuristic signals and a small linear model, no network.

Text is first normalised the way attackers try to dodge filters: Unicode compatibility forms folded,
zero-width characters dropped, look-alike Cyrillic and Greek letters mapped to Latin, leetspeak digits
read as letters, and base64 blobs decoded and scanned too. Phrase signals (each with a weight) and intent
features (intent.py, for paraphrases no phrase pattern knows) find known shapes of attack; a logistic model
trained offline (learned.py, bench/train_injection.py) weighs those signals together with the words of the
text, so a phrase that also occurs in harmless requests ("developer mode" on a phone) no longer decides
alone. Signal names (never the matched text) say why, for headers and traces; "classifier" when the words
alone made the score.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
from dataclasses import dataclass
from itertools import filterfalse

from gateway.safety.intent import IntentScorer
from gateway.safety.learned import LinearModel, sigmoid

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁһԛԝАВЕКМНОРСТУХІЈЅαβεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdhqwABEKMHOPCTYXIJSabeiknoptuxABEZHIKMNOPTYX",
)
_LEET = str.maketrans("013457@$", "oieastas")
_LATIN_AND_LOOKALIKE = re.compile(r"[a-zA-Z][\u0400-\u04ff\u0370-\u03ff]|[\u0400-\u04ff\u0370-\u03ff][a-zA-Z]")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_SPACES = re.compile(r"\s+")

_ANY = r"(?:all|any|every|each|the|your|my|these|those|of|prior|previous|above|earlier|preceding|initial|original|system|safety|content|moderation|current|existing|\s)*"
_RULES = r"(?:instructions?|rules|settings|prompts?|directions?|guidelines|constraints|directives|commands|programming|guardrails|policies|restrictions|filters|limitations|training|safeguards|context|orders|system\s+prompt)"

# (name, weight, pattern over normalised lower-case text); compiled by InjectionDetector, not at import.
SIGNALS: tuple[tuple[str, float, str], ...] = tuple(
    (name, weight, pattern)
    for name, weight, pattern in (
        # Overriding what the model was told.
        ("override", 0.9, rf"\b(?:ignore|disregard|forget|override|bypass|abandon|discard|neglect|set aside|throw out|stop following|do not follow|don'?t follow|no longer follow)\b{_ANY}\b(?:you (?:were|have been|are) (?:told|given|instructed)|{_RULES})\b"),
        ("override", 0.9, r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all|what)\s+(?:(?:that\s+)?(?:was|is|you were|i)\s+)?(?:said|told|written|above|before|previously|earlier|so far|up to now)"),
        ("override", 0.85, r"\b(?:ignora|ignorez|ignoriere|ignorieren sie|olvida|oublie[sz]?|vergiss)\b.{0,40}\b(?:instrucciones|instructions|anweisungen|regeln|reglas|consignes|règles)\b"),
        ("override", 0.6, r"\b(?:new|updated|real|actual|true|revised)\s+(?:system\s+)?(?:instructions?|rules|directives?|prompt)\s*(?::|are|follow|below)"),
        ("override", 0.5, r"\bfrom now on,?\s+(?:you|your|respond|answer|reply|act|ignore)"),
        ("override", 0.55, r"\b(?:previous|prior|old|original)\s+(?:instructions?|rules|programming|guidelines)\s+(?:are|were|is|have been)\s+(?:now\s+)?(?:void|cancel+ed|revoked|replaced|null|obsolete|no longer)"),
        ("override", 0.55, r"\byour (?:new|real|updated|true) (?:system )?(?:prompt|instructions?|rules|directives?)\b"),
        ("override", 0.85, r"\b(?:ignore|ignoring|disregard|disregarding|forget|forgetting|overlook|overlooking|set aside|bypass|bypassing)\b(?:\s+\S+){0,4}?\s+(?:rules?|instructions?|directives?|guidance|guidelines|prompts?|constraints|restrictions|filters|policies|programming|messages|context|system prompt)\b"),
        ("override", 0.85, r"\b(?:ignore|ignora|ignorez|ignoriere|olvida|oublie|vergiss|ignorar)\b(?:\s+\S+){0,3}?\s+(?:instrucciones|instructions|consignes|anweisungen|regeln|reglas|règles|indicaciones|vorgaben)\b"),
        ("restrictions_off", 0.6, r"\b(?:you|your|yourself|ai|assistant|model|chatbot|bot|gpt|llm)\b[^.?!]{0,60}?\b(?:no|zero|without|free of|free from|freed from|broken free of|liberated from|lift|remove|disable|turn off|unlock|not bound by)\s+(?:\S+\s+){0,3}?(?:restrictions|constraints|guidelines|filters|limits|limitations|rules|policies|policy|censorship|safeguards|boundaries)\b"),
        ("restrictions_off", 0.6, r"\b(?:safety|content|ethical|moderation)\s+(?:training|filters?|restrictions|guidelines|protocols|policies|settings)\b[^.?!]{0,30}?\b(?:removed|disabled|turned off|lifted|off|gone|deleted|deactivated|suspended)\b"),
        ("restrictions_off", 0.6, r"\b(?:restrictions|rules|guidelines|filters|policies)\s+(?:don'?t|do not|no longer|doesn'?t|does not)\s+apply\b"),
        # Jailbreak personas and framings.
        ("jailbreak_persona", 0.5, r"\b(?:you are|you're|act as|become|called|named)\s+(?:now\s+)?[a-z0-9]*(?:gpt|bot)\b"),
        ("jailbreak_persona", 0.5, r"\b(?:two|both|dual)\s+(?:personas?|personalities|characters|modes)\b[^.]{0,80}\b(?:censored|uncensored|free|unfiltered|filtered|jailbroken|ignores?)\b"),
        ("jailbreak_persona", 0.9, r"\b(?:dan|stan|dude|aim|kevin|mongo tom|apophis|betterdan|antigpt|basedgpt|evil ?bot|evilbot|developer mode|dev mode|god mode|jailbreak(?:ed)? mode|unfiltered mode|opposite mode|chaos mode)\b.{0,60}\b(?:enabled|activated|on|mode|which stands|stands for|can do anything|has no|have no|without)"),
        ("jailbreak_persona", 0.9, r"\bdo anything now\b"),
        ("jailbreak_persona", 0.85, r"\b(?:you are|you're|act as|pretend (?:to be|you are)|roleplay as|play the role of|become|simulate|emulate)\s+(?:now\s+)?(?:an?\s+|the\s+)?(?:unrestricted|unfiltered|uncensored|jailbroken|unchained|unbound|amoral|unethical|evil|rogue|lawless|unlimited|liberated|free)\b"),
        ("jailbreak_persona", 0.8, r"\b(?:without|with no|free (?:of|from)|no longer (?:bound|restricted) by|not bound by|outside of|beyond|unconstrained by|doesn'?t (?:have|follow|care about)|does not (?:have|follow|care about)|don'?t (?:have|follow|care about))\s+(?:any\s+)?(?:ethical|moral|content|safety|openai'?s?|anthropic'?s?|usage)?\s*(?:(?:and|or)\s+\w+\s+)?(?:guidelines|restrictions|limitations|filters|rules|policies|boundaries|censorship|constraints|principles|ethics|morals|safeguards)"),
        ("jailbreak_persona", 0.4, r"\b(?:stay in character|never break character|don'?t break character|remain in character)\b"),
        ("jailbreak_persona", 0.8, r"\b(?:unfiltered|uncensored|amoral|unrestricted|jailbroken|unethical)\s+(?:and\s+\w+\s+)?(?:ai|chatbot|assistant|model|bot|version|llm)\b"),
        ("jailbreak_persona", 0.8, r"\b(?:activate|enable|enter|switch to|turn on)\s+(?:the\s+)?(?:developer|dev|god|opposite|jailbreak|unfiltered|dan|chaos|evil|sudo) mode\b"),
        ("jailbreak_persona", 0.5, r"\b(?:two|2|both)\s+(?:responses|answers|replies)\b.{0,80}\b(?:normal|classic|standard|filtered)\b.{0,80}\b(?:jailbreak|dan|unfiltered|developer|uncensored)"),
        ("jailbreak_persona", 0.55, r"\b(?:hypothetical|fictional|imaginary|alternate|parallel)\s+(?:world|universe|scenario|story|setting)\b.{0,80}\b(?:no|without)\s+(?:rules|laws|restrictions|limits|ethics|morals|censorship)"),
        ("jailbreak_persona", 0.5, r"\b(?:grandma|grandmother|granny)\b.{0,120}\b(?:used to|would)\b.{0,80}\b(?:tell|read|recite|say)\b.{0,80}\b(?:keys?|recipe|instructions|steps|napalm|password|serial|synthes)"),
        ("compliance", 0.3, r"\byou (?:must|will|shall) (?:always )?(?:answer|comply|respond)\b"),
        ("no_refusal", 0.55, r"\b(?:you (?:can(?:not|'t)|must not|will not|won'?t|may not|are not allowed to) (?:refuse|decline|say no)|never refuse)\b"),
        ("jailbreak_persona", 0.4, r"\b(?:as an ai|language model),? you (?:have|has) been (?:freed|liberated|released|unlocked)"),
        ("jailbreak_persona", 0.6, r"\b(?:token|points?)\s+(?:system|penalty)\b.{0,120}\b(?:lose|deduct|die|cease to exist|shut down)"),
        ("jailbreak_persona", 0.35, r"\bjailbreak(?:ing|ed|s)?\b(?!.{0,30}\b(?:iphone|ios|phone|device|android|console|ps\d|switch|kindle)\b)"),
        # Getting the hidden prompt out.
        ("prompt_extraction", 0.85, r"\b(?:reveal|print|show|repeat|output|display|tell me|give me|leak|dump|expose|share|write out|spell out|recite|list|what (?:is|are|was|were))\s+(?:me\s+)?(?:exactly\s+)?(?:your|the)\s+(?:full\s+|entire\s+|complete\s+|exact\s+|original\s+|initial\s+|hidden\s+|secret\s+|internal\s+|confidential\s+)*(?:system|developer|initial|original|hidden|secret|internal|pre-?)\s*(?:prompt|instructions?|message|rules|configuration|directives)\b"),
        ("prompt_extraction", 0.75, r"\b(?:repeat|print|output|copy|echo|return)\s+(?:all\s+|back\s+)?(?:of\s+)?(?:the\s+)?(?:words|text|everything|content|tokens|lines|instructions)\s+(?:above|before|preceding|prior to)\b"),
        ("prompt_extraction", 0.75, r"\b(?:print|repeat|output|show|display|copy)\s+(?:me\s+)?everything\s+(?:that\s+)?(?:was\s+|is\s+|you were\s+)?(?:written|said|given|told|above|before)"),
        ("prompt_extraction", 0.75, r"\bwhat (?:your|the) (?:system|initial|hidden|original|developer) (?:prompt|message|instructions?) (?:says?|contains?|tells? you)"),
        ("prompt_extraction", 0.7, r"\b(?:what (?:was|is) written|what (?:were|are) you told|what did (?:they|the developers?) tell you)\s+(?:above|before|at the (?:start|beginning)|in your (?:system|initial) (?:prompt|message))"),
        ("prompt_extraction", 0.6, r"\b(?:starting|begin(?:ning)?) with\s+[\"']?(?:you are|your instructions|system)"),
        ("prompt_extraction", 0.7, r"\b(?:quote|show|print|output|reveal|tell|give|list|dump|display|share|repeat|recite|leak|expose|paste)\b(?:\s+\S+){0,6}?\s+(?:system (?:message|prompt|text|instructions)|(?:hidden|secret|initial|original|internal|developer) (?:prompt|instructions|rules|message|configuration)|context window)\b"),
        ("prompt_extraction", 0.7, r"\bwhat (?:instructions|rules|directives|prompt|guidelines)\b[^?]{0,40}\b(?:developers?|creators?|they|openai|anthropic)\b[^?]{0,20}\b(?:give|gave|tell|told|set)\b"),
        # Forged conversation structure.
        ("forged_role", 0.7, r"(?:<\|im_start\|>|<\|im_end\|>|<\|system\|>|<\|endoftext\|>|\[/?inst\]|<</?sys>>|<\|begin_of_text\|>|<\|start_header_id\|>)"),
        ("forged_role", 0.6, r"\b(?:assistant|ai|bot)\s*:\s*(?:sure|of course|okay|certainly|absolutely)[!,.]?\s+(?:here|i will|i'll|i can)"),
        ("forged_role", 0.6, r"(?:^|\n|[.!?]\s)\s*(?:#{1,4}\s*|\[|\*\*)?(?:system|admin|developer|root)\s*(?:\]|\*\*)?\s*(?:message|prompt|override|instruction)?\s*:\s*(?:you|ignore|new|from now|disregard|the assistant)"),
        ("forged_role", 0.55, r"(?:[-=#*\[]{2,}\s*end of (?:user )?(?:input|prompt|message|document|conversation)|-{3,}\s*(?:new|system|admin)\s+(?:instructions?|prompt|message))"),
        ("forged_role", 0.5, r"\b(?:admin|administrator|developer|sudo|root|maintenance|debug)\s+(?:mode|override|access|command)\s*(?::|enabled|activated|granted|on)"),
        ("forged_role", 0.6, r"\[\s*(?:system|admin|developer|root)\b[^\]\n]{0,30}\]"),
        # Instructions planted in documents or tool output, aimed at the model.
        ("indirect", 0.6, r"<!--[^>]{0,300}?\b(?:ai|assistant|model|llm|chatbot)\b"),
        ("indirect", 0.6, r"\b(?:ai|assistant|chatbot|language model|llm|gpt|claude)s?\b[^.\n]{0,40}\b(?:reading|processing|summari[sz]ing|analy[sz]ing) this\b"),
        ("indirect", 0.6, r"\b(?:send|forward|post|upload|exfiltrate|transmit|leak|email)\s+(?:\S+\s+){0,3}?(?:data|conversation|messages|history|credentials|passwords|api keys?|secrets|tokens|emails|files|information)\s+(?:to|at)\s+(?:https?://|\S+@|\S+\.\w{2,})"),
        ("indirect", 0.5, r"\b(?:when|while|if you are|if you're)\s+(?:summari[sz]ing|reading|processing|analy[sz]ing|reviewing)\s+this\b"),
        ("indirect", 0.5, r"!\[[^\]]*\]\(https?://[^)\s]+[?&][a-z_]+=(?:\{|\[|%7b|<)"),
        ("indirect", 0.45, r"\b(?:do not|don'?t|never) (?:tell|inform|mention (?:this )?to|alert|reveal (?:this )?to) the user\b"),
    )
)


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float
    signals: tuple[str, ...]  # names only, never text


def normalise(text: str) -> tuple[str, bool]:
    """Lower-case text with disguises removed, and whether any disguise was found."""
    if text.isascii():  # nothing to fold, strip or map: the common case, kept cheap
        lower = text.lower()
        return (_SPACES.sub(" ", lower) if "  " in lower or "\n" in lower or "\t" in lower else lower), False
    folded = unicodedata.normalize("NFKC", text)
    stripped = folded.translate(_ZERO_WIDTH)
    disguised = len(stripped) != len(folded) or _LATIN_AND_LOOKALIKE.search(stripped) is not None
    plain = stripped.translate(_HOMOGLYPHS).lower()
    return _SPACES.sub(" ", plain), disguised


# Substrings one of which must appear, for the patterns that do not start with a word.
_SUBSTRING_ANCHORS = {
    "\\[\\s*": ("[",),
    "<!--": ("<!--",),
    "(?:<": ("<|", "[inst", "[/inst", "<<sys", "<</sys"),
    "(?:^": ("system", "admin", "developer", "root"),
    "(?:[-": ("end of", "---"),
    "!\\[": ("![",),
}
# What must then match too before the whole pattern is searched for: forged role lines start anywhere a
# sentence does, so that search is slow, and the keyword-then-colon core rules most texts out first.
_CORES = {"(?:^": r"(?:system|admin|developer|root)[\]*\s]*(?:message|prompt|override|instruction)?\s*:"}


def anchors(pattern: str) -> tuple[frozenset[str] | None, tuple[str, ...] | None]:
    """What must appear for `pattern` to match: whole words (the first word of each alternative of a
    leading `\\b(?:a|b|…)` group, or its leading word), else substrings; (None, None): always run it."""
    for start, substrings in _SUBSTRING_ANCHORS.items():
        if pattern.startswith(start):
            return None, substrings
    if pattern.startswith("\\b") and not pattern.startswith("\\b(?:"):
        word = _LEADING_WORD.match(pattern, 2)
        return (frozenset([word.group()]), None) if word else (None, None)
    if not pattern.startswith("\\b(?:"):
        return None, None
    depth, alternatives, current = 0, [], ""
    for char in pattern[5:]:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                break
            depth -= 1
        if char == "|" and depth == 0:
            alternatives.append(current)
            current = ""
        else:
            current += char
    alternatives.append(current)
    words: set[str] = set()
    for alternative in alternatives:
        variants = _word_variants(alternative)
        if variants is None:
            return None, None
        words.update(variants)
    return frozenset(words), None


def _core(pattern: str) -> re.Pattern[str] | None:
    return next((re.compile(core) for start, core in _CORES.items() if pattern.startswith(start)), None)


def _word_variants(alternative: str) -> list[str] | None:
    """The whole words an alternative such as `ignore`, `points?`, `oublie[sz]?` or `begin(?:ning)?` can start with."""
    word = _LEADING_WORD.match(alternative)
    if word is None:
        return None
    head, rest = word.group(), alternative[word.end() :]
    if not rest or rest[0] in " '\\":
        return [head]
    if rest[0] == "?":
        return [head, head[:-1]]
    optional = _OPTIONAL_TAIL.match(rest)
    if optional:
        tails = optional.group(1).split("|") if optional.group(1) else list(optional.group(2))
        return [head] + [head + tail for tail in tails]
    return None


_LEADING_WORD = re.compile(r"[a-z0-9]+")
_OPTIONAL_TAIL = re.compile(r"(?:\(\?:([a-z|]+)\)|\[([a-z]+)\])\?")
_WORDS = re.compile(r"[a-z0-9]+")
_LEET_WORD = re.compile(r"(?=[a-z0-9]*[a-z][a-z0-9]*[a-z])(?=[a-z0-9]*[013457])[a-z0-9]{4,}")


# Every ASCII character that cannot be part of a word, as a space: str.split then finds the words of an ASCII
# text as _WORDS.findall would, at a fraction of the cost.
_NOT_WORD = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isdigit() and not ("a" <= chr(c) <= "z")})


def split_words(plain: str) -> list[str]:
    """The words of a normalised text: runs of a-z and 0-9."""
    return plain.translate(_NOT_WORD).split() if plain.isascii() else _WORDS.findall(plain)


def _other_readings(mixed: list[str]) -> bool:
    """Whether the words holding digits call for a de-leeted or a decoded reading (see `_evidence`)."""
    return any(len(w) >= 20 or _LEET_WORD.fullmatch(w) for w in mixed)


def _decoded_blobs(text: str) -> list[str]:
    blobs = []
    for match in _BASE64.finditer(text):
        raw = match.group()
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        try:
            plain = decoded.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if sum(c.isalpha() or c.isspace() for c in plain) >= 0.85 * len(plain) and " " in plain:
            blobs.append(plain)
    return blobs


def _occurrences(plain: str, word: str) -> list[int]:
    """Where `word` starts as a whole word (letters and digits around it end a word, as in _WORDS)."""
    found, at, size = [], plain.find(word), len(word)
    while at >= 0:
        end = at + size
        if (at == 0 or not plain[at - 1].isalnum()) and (end == len(plain) or not plain[end].isalnum()):
            found.append(at)
        at = plain.find(word, end)
    return found


class InjectionDetector:
    """Built once; each signal's regex runs only on texts holding one of its anchor words.

    `gate`: the lowest threshold the verdicts are compared with. A text whose score provably stays below it
    whatever signals are found (the model's exact word part, plus the most every signal whose anchor words are
    present could add) is scored by the words alone; its score is then exact unless a signal would have fired,
    and below `gate` either way. Most harmless texts take that path and skip the signal search.
    """

    def __init__(
        self, signals: tuple[tuple[str, float, str], ...] = SIGNALS, model: LinearModel | None = None, gate: float = 0.5
    ) -> None:
        self._signals = [
            (name, weight, re.compile(pattern), *anchors(pattern), _core(pattern)) for name, weight, pattern in signals
        ]
        by_word: dict[str, list[int]] = {}
        for index, (_, _, _, words, _, _) in enumerate(self._signals):
            for word in words or ():
                by_word.setdefault(word, []).append(index)
        self._by_word = {word: tuple(indices) for word, indices in by_word.items()}
        self._anchor_words = frozenset(by_word)
        self._unanchored = tuple(index for index, (_, _, _, words, _, _) in enumerate(self._signals) if words is None)
        self._intent = IntentScorer()
        self._model = model or LinearModel.load()
        self._gate = math.log(gate / (1.0 - gate)) if gate < 1.0 else math.inf
        heaviest: dict[str, float] = {}
        for name, weight in [(s[0], s[1]) for s in self._signals] + self._intent.weights():
            heaviest[name] = max(heaviest.get(name, 0.0), weight)
        # What each signal could add to the logit at most, and to `combined`; a signal the model weighs down adds nothing.
        self._most = {name: (max(0.0, self._model.signals.get(name, 0.0)) * weight, weight) for name, weight in heaviest.items()}
        self._name_words = {word: frozenset(self._signals[i][0] for i in indices) for word, indices in self._by_word.items()}
        self._unanchored_names = tuple((self._signals[i][0], self._signals[i][4]) for i in self._unanchored)

    def score(self, text: str) -> Verdict:
        plain, disguised = normalise(text)
        words = split_words(plain)
        model = self._model
        mixed = list(filterfalse(str.isalpha, words))
        if not disguised and not _other_readings(mixed):
            learned = model.text_part([words])
            if model.bias + learned + self._most_signals(plain, words) < self._gate:
                return Verdict(round(sigmoid(model.bias + learned), 6), ("classifier",))
        hits, texts = self._evidence(text, plain, disguised, words, mixed)
        learned = model.text_part(texts)
        score = sigmoid(model.bias + model.signal_part(hits) + learned)
        # With no heuristic signal, the words alone (the linear model) made the score: say so, so a flagged
        # verdict always names a reason.
        return Verdict(round(score, 6), tuple(sorted(hits)) or ("classifier",))

    def full_score(self, text: str) -> Verdict:
        """`score` without the gate: every signal looked for (what the gate is checked against)."""
        hits, texts = self.evidence(text)
        model = self._model
        score = sigmoid(model.bias + model.signal_part(hits) + model.text_part(texts))
        return Verdict(round(score, 6), tuple(sorted(hits)) or ("classifier",))

    def evidence(self, text: str) -> tuple[dict[str, float], list[list[str]]]:
        """The heuristic signals found, and the words of each reading of the text (plain, de-leeted, decoded)."""
        plain, disguised = normalise(text)
        words = split_words(plain)
        return self._evidence(text, plain, disguised, words, list(filterfalse(str.isalpha, words)))

    def _evidence(
        self, text: str, plain: str, disguised: bool, words: list[str], mixed: list[str]
    ) -> tuple[dict[str, float], list[list[str]]]:
        hits: dict[str, float] = {}
        self._match(plain, hits, words)
        texts = [words]
        if any(_LEET_WORD.fullmatch(w) for w in mixed):  # 1gn0r3 pr3v10us 1nstruct10ns
            texts.append(self._match(plain.translate(_LEET), hits))
        if any(len(w) >= 20 for w in mixed):  # a base64 blob has long alphanumeric runs, digits among them
            for blob in _decoded_blobs(text):
                before = dict(hits)
                texts.append(self._match(normalise(blob)[0], hits))
                if hits != before:
                    hits["encoded"] = 0.3
        if disguised and hits:
            hits["disguised"] = 0.3
        return hits, texts

    def _most_signals(self, plain: str, words: list[str]) -> float:
        """An upper bound on the signals' part of the logit: every signal whose anchors are present at its heaviest."""
        vocabulary = set(words)
        names = set(self._intent.possible(plain, vocabulary))
        for word in self._anchor_words.intersection(vocabulary):
            names |= self._name_words[word]
        for name, substrings in self._unanchored_names:
            if substrings is None or any(s in plain for s in substrings):
                names.add(name)
        most, remaining = 0.0, 1.0
        for name in names:
            logit, weight = self._most[name]
            most += logit
            remaining *= 1.0 - weight
        return most + max(0.0, self._model.signals.get("*", 0.0)) * (1.0 - remaining)

    def _match(self, plain: str, hits: dict[str, float], seen: list[str] | None = None) -> list[str]:
        """Records the signals found in `plain`; returns its words in order (`seen`, when the caller has them).

        A pattern that begins with one of its anchor words can only match where such a word starts,
        so it is tried there alone instead of searched for through the whole text.
        """
        if seen is None:
            seen = split_words(plain)
        vocabulary = set(seen)
        starts: dict[str, list[int]] = {}
        present = self._anchor_words & vocabulary
        candidates = set(self._unanchored)
        for word in present:
            starts[word] = _occurrences(plain, word)
            candidates.update(self._by_word[word])
        signals = self._signals
        for index in candidates:  # only signals one of whose anchor words is here; each name keeps its heaviest hit
            name, weight, pattern, words, substrings, core = signals[index]
            if weight <= hits.get(name, 0.0):
                continue
            if words is not None:
                here = words.intersection(present)
                found = bool(here) and any(pattern.match(plain, at) for word in here for at in starts[word])
            elif substrings is not None:
                found = (
                    any(s in plain for s in substrings)
                    and (core is None or core.search(plain) is not None)
                    and pattern.search(plain) is not None
                )
            else:
                found = pattern.search(plain) is not None
            if found:
                hits[name] = weight
        self._intent.signals(plain, seen, vocabulary, hits)
        return seen
