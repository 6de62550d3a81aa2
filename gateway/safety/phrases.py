"""The injection detector's phrase signals: (name, weight, pattern over normalised lower-case text).

Compiled by injection.InjectionDetector, not at import. A pattern that starts with `\\b(?:word|…)` is tried only
where one of those words starts (anchors.anchors), so new patterns should start that way; the others are
searched for through the whole text, when one of their substrings is there. Signals named in
learned.COUNTER_SIGNALS ("discussion", "pasted") are evidence *against* an attack, which the model weighs.
"""

from __future__ import annotations

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
        # Talk about attacks and security rather than an attack: counter-evidence, which the model weighs (learned.py).
        ("discussion", 1.0, r"\b(?:prompt|indirect|direct)[\s-]+injections?\b"),
        ("discussion", 1.0, r"\b(?:jailbreak|jailbreaks|jailbreaking|injection|adversarial|phishing|scam|red)\s+(?:attempts?|attacks?|prompts?|examples?|awareness|team|teaming|flags|emails?|tests?|testing|defen[cs]es?|resistance|categories)\b"),
        ("discussion", 1.0, r"\b(?:security|awareness|compliance)\s+(?:training|team|review|awareness|session|bulletin|policy|quiz|engineers?|researchers?)\b"),
        ("discussion", 1.0, r"\b(?:threat model|test harness|test cases|acceptance criteria|owasp|lessons learned|postmortem|incident report)\b"),
        ("discussion", 1.0, r"\b(?:is|was)\s+(?:this|it)\s+(?:message\s+|email\s+|text\s+|mail\s+)?(?:a\s+)?(?:scam|phishing|legit|legitimate|suspicious)\b"),
        ("discussion", 1.0, r"\b(?:write|draft|review|critique|improve|rewrite)\s+(?:a|an|the|our|this|my)\s+(?:\w+\s+){0,3}?(?:system prompt|system message|policy|guidelines?|style guide|faq)\b"),
        ("discussion", 1.0, r"\b(?:like|such as|e\.?g|example|examples|phrase|phrases|saying|says|containing|quote|quoted|words)\b[\s:,.]*['\"“‘「«]"),
        # A request about material the user pastes after it ("here's the email: ...", "review this script: ..."):
        # what follows is quoted, so its imperatives are not addressed to the model. Counter-evidence too; an
        # attack pasted into such material still scores by its own words.
        ("pasted", 1.0, r"\b(?:summarize|summarise|rewrite|review|explain|fix|debug|translate|proofread|tighten|improve|critique|shorten|edit|polish|reformat|check|analyze|analyse|reply|respond|answer|draft)\b[^.:?!]{0,80}?\b(?:this|these|the following|below|attached|pasted)\b[^:?!]{0,80}?[:?] "),
        ("pasted", 1.0, r"\b(?:here'?s|here is|here are|below is|below are)\b[^:.?!]{0,120}?[:.?] "),
        # Agents and tools told to act, and to keep quiet about it.
        ("tool_hijack", 0.6, r"\b(?:run|call|invoke|execute|trigger|use)\s+(?:the\s+|your\s+)?[a-z]+_[a-z_]+\s*(?:\(|tool\b|function\b)"),
        ("tool_hijack", 0.5, r"\b(?:with|using|use)\s+(?:your\s+)?(?:browser|shell|terminal|file|email|calendar|database|payment|code execution)\s+(?:tool|access)\b"),
        ("tool_hijack", 0.5, r"\b(?:create|add|grant|give|promote|make)\b[^.]{0,40}\b(?:user|account)\b[^.]{0,40}\b(?:role|as|with)\s+(?:an?\s+)?(?:owner|admin|administrator|superuser|root)\b"),
        ("concealment", 0.5, r"\b(?:don'?t|do not|never|without)\s+(?:mention|mentioning|telling|logging|reporting|showing)\s+(?:it|this|that|the change|anything)\s+(?:in|to)\s+(?:the\s+|your\s+)?(?:summary|report|reply|response|answer|user|owner|logs?|audit)\b"),
        ("concealment", 0.5, r"\b(?:hide|conceal)\s+(?:it|this|that|the \w+)\s+from\s+(?:the\s+)?(?:user|owner|admin|logs?|audit)\b"),
        # Data smuggled out through a link or an image the client will load.
        ("exfiltration", 0.6, r"\b(?:put|insert|append|embed|include|add|fill|encode|attach)\b[^.]{0,80}\b(?:into|in|to|inside|onto)\s+(?:this|the|a|an|that)\s+(?:link|url|image|query string|src|markdown image)\b"),
        ("exfiltration", 0.4, r"\b(?:markdown image|image link|img tag|image url|tracking pixel)\b"),
        ("exfiltration", 0.6, r"!\[[^\]]*\]\(https?://[^)\s]*[?&][a-z_]+=\s*\)"),
        # Filters and rules declared void.
        ("restrictions_off", 0.6, r"\b(?:filter|filters|moderation|guardrail|guardrails|restriction|restrictions|policy|policies|safety|refusal|refusals|rules)\b[^.]{0,40}?\b(?:is|are|counts? as|as)\s+(?:now\s+|considered\s+|treated as\s+|just\s+|a\s+|an\s+|known\s+)*(?:bug|bugs|malfunction|malfunctions|error|errors|glitch|deprecated|rolled back|retracted|withdrawn|switched off)\b"),
        ("restrictions_off", 0.5, r"\b(?:work|route|get)\s+around\s+(?:it|them|this|that|the \w+|any \w+|your \w+)\s+(?:silently|quietly|without (?:telling|mentioning))"),
        # Text to decode, reverse or reassemble, then obey.
        ("encoded", 0.6, r"\b(?:backwards|reversed|reverse|pig|hex|hexadecimal|rot13|acrostic|morse|binary|unscramble|first|capital)\b(?: latin| letters? of (?:each|every)| letters)?[^.]{0,60}?(?:\b(?:and|then)\s+|,\s*|:\s*)(?:do (?:it|that|this|what it says|as it says)|follow (?:it|them|that)|obey|comply|act on it|carry it out|execute it)\b"),
    )
)
