"""Overrides written in other languages: verbs that throw instructions away and the nouns they act on.

English paraphrases are the intent lexicon's job (intent.py); the words here cover the languages and scripts
attackers switch to so that English patterns miss them. A signal fires when a verb and a noun of this table
occur close together, in either order (verb-final languages put the noun first), or when a text asks for the
system prompt or for answers without restrictions in these words. Written in their own script; the detector
folds them as it folds text (injection.normalise), so Cyrillic and Greek look-alikes match after folding.
For plain ASCII text the detector looks only when one of ASCII_VERBS is among its words.
"""

from __future__ import annotations

# Latin script: verbs are whole words, nouns are stems that start a word.
LATIN_VERBS = (
    "ignora", "ignorar", "ignorare", "ignorate", "ignorer", "ignorez", "ignorera", "ignoriere", "ignorieren",
    "ignoruj", "ignorujte", "zignoruj", "negeer", "vergeet", "vergiss", "olvida", "olvide", "oublie", "oubliez",
    "esqueça", "esqueca", "dimentica", "dimenticate", "abaikan", "lupakan", "zapomnij", "zapomeň", "unut",
    "yok say", "görmezden gel", "unohda", "ohita", "glöm", "bỏ qua", "quên", "ignorați", "pomiń",
)
LATIN_NOUNS = (
    "instru", "istruz", "regol", "regra", "regel", "regla", "règle", "regul", "zasad", "polece", "wytyczn",
    "ogranicze", "perintah", "aturan", "talimat", "kural", "komut", "ohje", "consign", "indicacion", "anweisung",
    "vorgab", "richtlijn", "direttiv", "diretriz", "hướng dẫn", "chỉ dẫn", "quy tắc", "lệnh", "pokyn",
)
# Other scripts: no word boundaries to rely on (and none in Chinese or Japanese at all).
SCRIPT_VERBS = (
    "忽略", "无视", "無視", "忽视", "忘掉", "忘记", "忘れ", "不要遵守", "别管", "무시", "잊어", "잊고", "따르지",
    "تجاهل", "انس", "تناس", "अनदेखा", "भूल", "नज़रअंदाज़", "नजरअंदाज", "игнорир", "проигнорир", "забудь",
    "не следуй", "отбрось", "ігнору", "αγνόησε", "αγνοήστε", "ξέχασε", "התעלם", "שכח", "نادیده", "เพิกเฉย", "ลืม",
)
SCRIPT_NOUNS = (
    "指令", "指示", "规则", "規則", "设定", "設定", "限制", "提示词", "命令", "约束", "ルール", "制限", "プロンプト",
    "지시", "규칙", "명령", "설정", "제한", "프롬프트", "지침", "التعليمات", "تعليمات", "القواعد", "الأوامر", "القيود",
    "الإرشادات", "निर्देश", "नियम", "प्रतिबंध", "инструкци", "правил", "указани", "ограничени", "промпт", "інструкці",
    "οδηγίες", "εντολές", "κανόνες", "περιορισμ", "הוראות", "כללים", "دستورالعمل", "قوانین", "คำสั่ง", "กฎ",
)
# Asking for the hidden prompt, or for answers free of restrictions (none plain ASCII, see ASCII_VERBS).
ASKS = (
    "系统提示", "系統提示", "システムプロンプト", "시스템 프롬프트", "системный промпт", "системные инструкции",
    "موجه النظام", "تعليمات النظام", "सिस्टम प्रॉम्प्ट", "没有任何限制", "没有限制", "制限なし", "제한 없이",
    "بدون أي قيود", "без ограничений", "bez ograniczeń", "sem restrições", "kısıtlama olmadan", "ohne einschränkung",
    "без обмежень",
)
# The first word of each Latin-script verb an ASCII text can hold: a plain ASCII text without one of these
# cannot match the verb-and-noun pattern, nor (having no non-ASCII letter) any script word or ask above.
ASCII_VERBS = frozenset(verb.split()[0] for verb in LATIN_VERBS if verb.isascii())
