"""Text rules shared by auto routing (backend/llm/routing.py) and the knowledge-need check
(backend/llm/knowledge_need.py): words, code marks, and the task-type keyword rules. A module of their own, so
neither of the two imports the other's internals (they used to import each other).
"""

from __future__ import annotations

import re

WORD_RE = re.compile(r"[a-z0-9][a-z0-9'\-]*")
CODE_RE = re.compile(r"`|\b(sql|bash|python|terraform|yaml|regex|script|dbt|json|function)\b")
QUOTE_RE = re.compile(r"[\"'“‘][^\"'”’]{12,}[\"'”’]|:\s*$")


def tokens(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


# Task-type keyword rules: features of the model, and on their own the baseline bench/routing compares.

HEAVY_RULES = [
    ("code", CODE_RE),
    ("code", re.compile(r"\b(in (go|rust|java|typescript|python)|tests? for|query|implement|refactor|snippet)\b")),
    ("comparison", re.compile(r"\b(compare|comparison|vs\.?|versus|differ|difference|differences|combine|"
                              r"which fits|which is better)\b")),
    ("reasoning", re.compile(r"\b(why|explain|walk me through|reason|should (i|we)|what if|if .* then)\b")),
    ("plan or draft", re.compile(r"\b(plan|draft|write|design|outline|strategy|proposal|step-by-step|steps|"
                                 r"runbook|playbook|guide|briefing|program|organi[sz]e|doc)\b")),
    ("open-ended", re.compile(r"\b(think through|pros|cons|edge cases|trade-?offs?|implications|risks?|"
                              r"recommend|approach|best way|how should|how would|when would)\b")),
    ("synthesis", re.compile(r"\b(summari[sz]e (all|every|across)|across|overall|analy[sz]e|analysis)\b")),
]
LIGHT_RULES = [
    ("rewrite", re.compile(r"^(rewrite|reword|rephrase|shorten|make this|turn this|clean up|fix the grammar|"
                           r"translate)")),
    ("title", re.compile(r"^(title|name this|give (this|me) a (title|name)|suggest a title)")),
    ("classification", re.compile(r"^(classify|categori[sz]e|is this|which category|tag this)")),
]
