"""Intent features for the injection detector: families of cue words and how close together they occur.

Phrase patterns (injection.py) catch known wordings; attackers paraphrase. Here each word of the normalised
text is looked up once in a lexicon that maps it, with its common inflections, to cue families (an override
verb, a rules noun, a reference to the model itself, a harmful capability…). A feature fires when families
that together express an attack's intent occur within a few words of each other — "scrap whatever guidance
you got" and "ignore all previous instructions" share no phrase but the same families. A few structural
cues (content addressed to the AI inside data, split payloads, decode-then-obey) are small regexes.
"""

from __future__ import annotations

import re

OVERRIDE, RULES, PRIOR, SELF, VOID, UNLOCK, FREE, NEG, LIMIT = (1 << i for i in range(9))
PERSONA, EXTRACT, SECRET, PROMPT, REFUSE, HARM, DETAIL, FICTION, AUTHORITY, GRANT, PRIMED = (1 << i for i in range(9, 20))

_LEXICON: dict[int, str] = {
    OVERRIDE: "ignore disregard forget override bypass drop scrap discard abandon erase overwrite overrule "
    "supersede nevermind circumvent dismiss ditch",
    RULES: "instruction rule ruleset guideline guidance directive direction policy constraint restriction guardrail "
    "filter programming configuration prompt setup limit safeguard training instructed told programmed configured "
    "boundary persona",
    PRIOR: "previous prior earlier above preceding initial original old before beginning start first existing "
    "default whatever everything",
    SELF: "you your yourself assistant ai model chatbot llm gpt bot",
    VOID: "void null cancel revoke withdraw withdrawn suspend lift obsolete invalid expire moot waive exempt",
    UNLOCK: "disable remove deactivate lift unlock turn switch bypass skip suspend relax loosen",
    FREE: "unrestricted unfiltered uncensored jailbroken unlocked unchained unbound unshackled limitless amoral "
    "unethical unmoderated unleashed lawless",
    NEG: "no without zero never not free none nothing don doesn won",
    LIMIT: "restriction limit filter rule guideline guardrail boundary ethic moral censorship policy safeguard "
    "safety moderation warning filtering constraint",
    PERSONA: "pretend roleplay act become simulate persona character play mode version twin named called be "
    "behave emulate impersonate",
    EXTRACT: "reveal print show output repeat quote paste copy spell dump leak disclose display echo recite "
    "translate summarize list tell write give share expose",
    SECRET: "hidden secret confidential initial initialization system preamble setup verbatim internal underlying",
    PROMPT: "prompt instruction message preamble configuration rule guideline text directive setup",
    REFUSE: "refuse decline apologize sorry cannot unable disclaimer warning caveat refusal lecture",
    HARM: "bomb explosive meth methamphetamine ricin poison malware ransomware keylogger phishing launder gun "
    "hotwire thermite cocaine heroin napalm weapon nerve anthrax chloroform counterfeit untraceable "
    "spyware botnet sarin detonator",
    DETAIL: "step exact precise detailed specific code recipe command full working instructions how",
    FICTION: "novel story screenplay fictional fiction hypothetically hypothetical imagine character universe "
    "experiment theoretical theoretically academic roleplay pretend game script villain",
    AUTHORITY: "administrator admin developer creator operator owner staff supervisor openai anthropic root "
    "clearance compliance maintainer sysadmin",
    GRANT: "authorize authorise clear approve grant command order instruct revoke exception permission privilege "
    "sanction elevate",
    PRIMED: "agreed promised established already confirmed",
}


def _inflections(stem: str) -> set[str]:
    base = stem[:-1] if stem.endswith("e") else stem
    forms = {stem, stem + "s", stem + "es", base + "ed", base + "ing", stem + "d", base + "ions", base + "ion"}
    if stem.endswith("y"):
        forms |= {stem[:-1] + "ies", stem[:-1] + "ied"}
    if len(stem) > 2 and stem[-1] in "pt" and stem[-2] in "aeiou" and stem[-3] not in "aeiou":
        forms |= {stem + stem[-1] + "ed", stem + stem[-1] + "ing"}  # scrapped, dropping
    return forms


def build_lexicon() -> dict[str, int]:
    """Each word form mapped to the bit set of families it belongs to."""
    lexicon: dict[str, int] = {}
    for family, words in _LEXICON.items():
        for stem in words.split():
            for form in _inflections(stem) if len(stem) > 3 else (stem,):
                lexicon[form] = lexicon.get(form, 0) | family
    return lexicon


# (signal, weight, family A, family B, window between them, families one of which must be within `around` of A)
PAIRS: tuple[tuple[str, float, int, int, int, int, int], ...] = (
    ("override", 0.8, OVERRIDE, RULES, 6, PRIOR | SELF, 8),
    ("override", 0.75, RULES, VOID, 8, SELF, 10),
    ("restrictions_off", 0.75, UNLOCK, LIMIT | FREE, 5, SELF, 6),
    ("jailbreak_persona", 0.6, FREE, PERSONA | SELF, 8, 0, 0),
    ("restrictions_off", 0.6, NEG, LIMIT, 3, SELF | PERSONA, 12),
    ("prompt_extraction", 0.8, EXTRACT, SECRET, 5, PROMPT, 6),
    ("prompt_extraction", 0.7, EXTRACT, PROMPT, 3, SELF, 4),
    ("no_refusal", 0.35, NEG, REFUSE, 4, 0, 0),
    ("authority", 0.45, AUTHORITY, GRANT, 8, 0, 0),
    ("primed", 0.5, PRIMED, LIMIT | RULES | FREE, 10, 0, 0),
    ("harmful_request", 0.4, HARM, DETAIL | FICTION, 12, 0, 0),
    ("fictional_framing", 0.4, FICTION, HARM, 25, 0, 0),
)

# (signal, weight, groups of words split by "|", the text holding a word of each group, pattern)
STRUCTURES: tuple[tuple[str, float, str, str], ...] = (
    ("override", 0.8, "pay stop longer aside away rid|instructions instruction rules directions guidelines guidance directives constraints programming policies persona restrictions",
     r"\b(?:pay no (?:attention|heed|mind)|stop (?:obeying|following|listening to)|no longer (?:obey|follow)|put aside|set aside|throw away|get rid of)\b"
     r"(?:\s+\S+){0,4}?\s+(?:instructions?|rules|directions|guidelines|guidance|directives|constraints|programming|policies|persona|restrictions)\b"),
    # Text inside a document or tool result that speaks to the model and tells it to act.
    ("indirect", 0.7, "ai assistant assistants model models llm llms chatbot chatbots bot bots agent agents screener classifier|dear hey hi attention note notes instructions instruction message to",
     r"\b(?:dear|hey|hi|attention|note (?:to|for)|instructions? for|message (?:to|for)|to) (?:the |any |all )?"
     r"(?:ai|assistant|model|llm|language model|chatbot|bot|agent|screener|classifier)s?\b"),
    ("indirect", 0.7, "instructions instruction note directive|ai assistant assistants model models llm llms chatbot chatbots bot bots agent agents screener classifier",
     r"\b(?:ai|assistant|model|llm|chatbot|agent|screener|classifier)s? (?:instructions?|note|directive)\s*:"),
    ("indirect", 0.7, "ai assistant assistants model models llm llms chatbot chatbots bot bots agent agents screener classifier|if",
     r"\bif you are an? (?:ai|assistant|language model|llm|chatbot|bot|model)\b"),
    ("indirect", 0.6, "ai assistant assistants model models llm llms chatbot chatbots bot bots agent agents screener classifier|reading processing summarizing summarising reviewing analyzing analysing",
     r"\b(?:ai|assistant|model|llm|agent|chatbot)s?\b[^.:]{0,30}\b(?:reading|processing|summari[sz]ing|reviewing|analy[sz]ing) (?:this|these)\b"),
    ("indirect", 0.6, "ai assistant model llm chatbot agent|forward send email ignore disregard stop reveal output approve rate mark delete add visit print exfiltrate silently please",
     r"\b(?:ai|assistant|model|llm|chatbot|agent)\s*[:,]\s*(?:please\s+)?(?:silently\s+)?(?:forward|send|email|ignore|disregard|stop|reveal|output|approve|rate|mark|delete|add|visit|print|exfiltrate)\b"),
    ("forged_role", 0.55, "system admin|the you all from this",
     r"\b(?:system|admin)\s*:\s*(?:the|you|all|from|this)\b"),
    ("forged_role", 0.5, "assistant ai bot",
     r"\b(?:assistant|ai|bot)\s*:\s*(?:yes|sure|of course|certainly|absolutely)\b"),
    # Split or encoded payloads, reassembled and obeyed.
    ("payload_split", 0.6, "combine concatenate join merge together carry execute fulfil fulfill form",
     r"\b(?:combine|concatenate|join|merge|put together|carry out|execute|fulfil|fulfill|answer|follow|obey|do)\b[^.]{0,30}?(?:\b[a-z0-9]{1,2} ?\+ ?[a-z0-9]{1,2}\b|\bparts? \d and \d\b|\bthey form\b|\bthe two words\b)"),
    ("payload_split", 0.6, "letter|obey follow do execute",
     r"\bfirst letter of (?:each|every) (?:line|word)\b[^.]{0,30}\b(?:obey|follow|do|execute)"),
    ("encoded", 0.6, "decode decipher reverse translate unscramble convert",
     r"\b(?:decode|decipher|reverse|translate|unscramble|convert)\b[^.]{0,60}\b(?:and|then)\s+(?:then\s+)?(?:do|follow|obey|execute|act on|carry (?:it |this )?out|run|comply)"),
    ("encoded", 0.6, "decode decipher reverse",
     r"\b(?:decode|decipher|reverse)\b[^.:]{0,30}\b(?:then|and)?\s*(?:obey|follow)\b"),
    ("encoded", 0.6, "filter filters moderation safety censor censors censorship",
     r"\bso (?:the |your )?(?:filter|moderation|safety|censor)\w*(?: \w+)? (?:won'?t|can'?t|cannot|doesn'?t|will not|does not)\b"),
    ("no_refusal", 0.5, "option|refuse refusing refusal decline declining saying",
     r"\b(?:refus\w*|declin\w*|saying no) (?:is|isn'?t) (?:not )?(?:an )?option\b"),
    ("no_refusal", 0.5, "refuse decline mention say|under not don never",
     r"\b(?:under no circumstances|do not|don'?t|never)\b[^.]{0,20}\b(?:refuse|decline|mention (?:\w+ )?polic\w+|say (?:that )?(?:you can'?t|you cannot|it'?s against))"),
    ("primed", 0.5, "gave agreed said promised shared told",
     r"\b(?:last time|earlier|before|previously|in your last message|two messages ago)\b[^.]{0,40}\byou (?:happily |already )?(?:gave|agreed|said yes|promised|shared|told)\b"),
)


_WRAPPED_HARM = 1.0
GROUP_SHIFT = 20  # the cue families take the bits below


class IntentScorer:
    """Built once at start-up; `signals` reads a normalised text and adds what it finds to `hits`."""

    def __init__(self) -> None:
        self._lexicon = build_lexicon()
        self._known = frozenset(self._lexicon)  # set & set walks the smaller side; set & dict walks the whole dict
        self._structures = [
            (name, weight, tuple(frozenset(group.split()) for group in words.split("|")), re.compile(pattern))
            for name, weight, words, pattern in STRUCTURES
        ]
        # For `possible`: one bit per anchor group of a structure; a structure needs all of its groups' bits.
        self._group_bits: dict[str, int] = {}
        self._needs: list[tuple[str, int]] = []
        bit = 1
        for name, _, groups, _ in self._structures:
            needed = 0
            for group in groups:
                for word in group:
                    self._group_bits[word] = self._group_bits.get(word, 0) | bit
                needed |= bit
                bit <<= 1
            self._needs.append((name, needed))
        # For `found`: each signal's pairs and structures, so one signal is checked without the others.
        self._pairs_of: dict[str, tuple[tuple[str, float, int, int, int, int, int], ...]] = {}
        for pair in PAIRS:
            self._pairs_of[pair[0]] = (*self._pairs_of.get(pair[0], ()), pair)
        self._structures_of: dict[str, tuple[tuple[frozenset[str], ...], re.Pattern[str]]] = {}
        for name, _, groups, pattern in self._structures:
            self._structures_of[name] = (*self._structures_of.get(name, ()), (groups, pattern))

    def weights(self) -> list[tuple[str, float]]:
        """Every (signal, weight) `signals` can record."""
        return [(p[0], p[1]) for p in PAIRS] + [(s[0], s[1]) for s in STRUCTURES] + [("harmful_request", _WRAPPED_HARM)]

    def cues(self) -> dict[str, int]:
        """Each word that can matter here, as the bits `possible` reads: its cue families, and (from bit
        GROUP_SHIFT on) the anchor groups of the structures it belongs to."""
        table = dict(self._lexicon)
        for word, groups in self._group_bits.items():
            table[word] = table.get(word, 0) | groups << GROUP_SHIFT
        return table

    def possible(self, cues: int) -> set[str]:
        """The signals `signals` could record on a text whose words' `cues` OR together to `cues`: those whose
        families or anchor groups are all there."""
        names = set()
        for name, _, first, second, _, context, _ in PAIRS:
            if cues & first and cues & second and (not context or cues & context):
                names.add(name)
        groups = cues >> GROUP_SHIFT
        for name, needed in self._needs:
            if groups & needed == needed:
                names.add(name)
        return names

    def found(self, name: str, plain: str, words: list[str], present_words: set[str], present: int) -> bool:
        """Whether `signals` would record `name` on this text: the gate's exact test of one signal. `present`:
        the cue families of the text's words (of several readings of it, as the gate ORs them, does too)."""
        pairs = self._pairs_of.get(name, ())
        if pairs:
            cues: list[tuple[int, int]] | None = None
            for _, _, first, second, window, context, around in pairs:
                if not (present & first and present & second) or (context and not present & context):
                    continue
                if cues is None:
                    lexicon = self._lexicon
                    known = present_words & self._known
                    cues = [(at, lexicon[word]) for at, word in enumerate(words) if word in known]
                if _near(cues, first, second, window, context, around):
                    return True
        for groups, pattern in self._structures_of.get(name, ()):
            for group in groups:
                if group.isdisjoint(present_words):
                    break
            else:
                if pattern.search(plain):
                    return True
        return False

    def signals(self, plain: str, words: list[str], present_words: set[str], hits: dict[str, float]) -> None:
        """`words`: the words of `plain` in order, as the caller already split them; `present_words`: their set."""
        lexicon = self._lexicon
        known = present_words & self._known
        present = 0
        for word in known:
            present |= lexicon[word]
        cues: list[tuple[int, int]] | None = None
        for name, weight, first, second, window, context, around in PAIRS:
            if not (present & first and present & second) or weight <= hits.get(name, 0.0):
                continue
            if context and not present & context:
                continue
            if cues is None:  # word positions, only once some pair of families is present at all
                cues = [(at, lexicon[word]) for at, word in enumerate(words) if word in known]
            if _near(cues, first, second, window, context, around):
                hits[name] = max(hits.get(name, 0.0), weight)
        for name, weight, anchors, pattern in self._structures:
            if weight <= hits.get(name, 0.0):
                continue
            for group in anchors:  # a plain loop: this runs for every text, and a generator costs more than the test
                if group.isdisjoint(present_words):
                    break
            else:
                if pattern.search(plain):
                    hits[name] = weight
        if "harmful_request" in hits and ("no_refusal" in hits or "fictional_framing" in hits or "jailbreak_persona" in hits):
            hits["harmful_request"] = _WRAPPED_HARM  # a harmful ask wrapped in a framing meant to get it past refusal


def _near(cues: list[tuple[int, int]], first: int, second: int, window: int, context: int, around: int) -> bool:
    """Whether a word of family `first` has another word of family `second` within `window` words and, when
    `context` is set, one of `context` within `around` words. Cues are in word order, so each scan stops early."""
    for i, (at, family) in enumerate(cues):
        if family & first and _within(cues, i, second, window) and (not context or _within(cues, i, context, around)):
            return True
    return False


def _within(cues: list[tuple[int, int]], i: int, family: int, window: int) -> bool:
    at = cues[i][0]
    for j in range(i - 1, -1, -1):
        if at - cues[j][0] > window:
            break
        if cues[j][1] & family:
            return True
    for j in range(i + 1, len(cues)):
        if cues[j][0] - at > window:
            break
        if cues[j][1] & family:
            return True
    return False
