"""Auto routing: classify a request as light (-> `fast`) or heavy (-> `smart`), locally, in microseconds.

A tiny logistic regression over cheap text features (words, leading words, length, quotes, code marks, the
keyword rules below, whether the message needs the knowledge base at all) and, on a follow-up turn, features of
the user's previous message and of the follow-up's shape ("add the error responses" after a code request is
heavy; "shorter pls" is a rewrite whatever came before). Trained by bench/routing/train.py on
bench/data/routing_questions.jsonl and routing_conversations_train.jsonl; the weights ship as
routing_model.json next to this file (no download). bench/routing compares it with keyword rules.
The threshold leans towards `smart`: sending a heavy question to a weak model costs more than the
saving, so it is tuned for >= 95% of heavy questions on `smart` (cross-validated, never on the holdouts).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from backend.llm.knowledge_need import needs_knowledge
from backend.llm.text_rules import CODE_RE, HEAVY_RULES, LIGHT_RULES, QUOTE_RE, tokens

MODEL_PATH = Path(__file__).with_name("routing_model.json")

def features(text: str, previous: str | None = None) -> dict[str, float]:
    """Sparse features; names are stable strings so the weights file stays readable. `previous`: on a
    follow-up turn, the user's message before this one ("add the error responses" continues a code task;
    "shorter pls" rewrites the last answer, whatever it was)."""
    feats = _text_features(text)
    if previous is not None:
        feats.update(_followup_features(text, previous))
    need = needs_knowledge(text, follow_up=previous is not None)
    if not need.needed:  # a greeting, a rewrite of supplied text or of the last answer, a title request...
        feats[f"no_passages:{need.reason}"] = 1.0
    return feats


def _text_features(text: str) -> dict[str, float]:
    words = tokens(text)
    feats: dict[str, float] = {"bias": 1.0}
    for w in words:
        feats[f"w:{w}"] = 1.0
    for a, b in zip(words, words[1:], strict=False):
        feats[f"b:{a}_{b}"] = 1.0
    if words:
        feats[f"first:{words[0]}"] = 1.0
    if len(words) > 1:
        feats[f"first2:{words[0]}_{words[1]}"] = 1.0
    n = len(words)
    for cut in (3, 8, 15, 25, 40):
        if n > cut:
            feats[f"len>{cut}"] = 1.0
    feats["log_len"] = math.log1p(n) / 4
    feats["questions"] = min(text.count("?"), 3) / 3
    if CODE_RE.search(text.lower()):
        feats["code"] = 1.0
    if QUOTE_RE.search(text):
        feats["quoted"] = 1.0
    if re.search(r"\d", text):
        feats["digits"] = 1.0
    if " and " in text.lower() and "?" in text:
        feats["and_question"] = 1.0
    for name in _matching(HEAVY_RULES + LIGHT_RULES, text.lower().strip()):
        feats[f"rule:{name}"] = 1.0
    return feats


def _matching(rules: list[tuple[str, re.Pattern[str]]], low: str) -> list[str]:
    return [name for name, rule in rules if rule.search(low)]


# Follow-up shapes: what a short message does to the conversation's task.
_FOLLOW_UP_RULES = [
    ("edit", re.compile(r"\b(shorter|longer|friendlier|simpler|softer|punchier|less (formal|stiff|salesy)|more "
                        r"(casual|formal|direct)|(in|as|into) a (table|list)|bullets?|bullet points|tone|typos?|"
                        r"one (line|sentence|paragraph)|tl;?dr|pls|please)\b")),
    ("hypothetical", re.compile(r"^(and |but |so |ok )?(what if|and if|if (we|they|i|it|the)|what about if|suppose|"
                                r"what happens if|would it|does that change)\b")),
    ("extend", re.compile(r"^(can you |could you |now |also |and |then )*(add|include|extend|handle|support|output|"
                          r"raise|set|fix|change|make it (also|handle|work|support)|also|now (do|write|draft|"
                          r"make)|do the same|redo|rework|rewrite it so)\b")),
    ("options", re.compile(r"\b(options|what can (i|we) do|what could (i|we)|what should|any way|alternatives?|"
                           r"workarounds?|what now|what would you)\b")),
    ("figure", re.compile(r"\b(total|in total|how much|what('s| is| does) (that|it|my|the) (cost|come to|total)|"
                          r"per year|annual(ly)?|in dollars|math|calculate|work out)\b")),
]


def _followup_features(text: str, previous: str) -> dict[str, float]:
    words, before = tokens(text), tokens(previous)
    feats = {"fu": 1.0}
    for name in _matching(_FOLLOW_UP_RULES, text.lower().strip()):
        feats[f"fu:rule:{name}"] = 1.0
    if words:
        feats[f"fu:first:{words[0]}"] = 1.0
    if len(words) > 1:
        feats[f"fu:first2:{words[0]}_{words[1]}"] = 1.0
    short = len(words) <= 8
    if short:
        feats["fu:short"] = 1.0
    if before:
        feats[f"fu:prevfirst:{before[0]}"] = 1.0
    if len(before) > 15:
        feats["fu:prev_long"] = 1.0
    low = previous.lower().strip()
    for name in _matching(HEAVY_RULES, low):
        feats[f"fu:prev:{name}"] = 1.0
        if short:
            feats[f"fu:short_after:{name}"] = 1.0
    for name in _matching(LIGHT_RULES, low):
        feats[f"fu:prev:{name}"] = 1.0
    return feats


@dataclass(frozen=True)
class Classification:
    label: str  # light | heavy
    p_heavy: float
    reason: str


class QueryClassifier:
    def __init__(self, *, weights: dict[str, float], threshold: float, version: str = "") -> None:
        self.weights = weights
        self.threshold = threshold
        self.version = version

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> QueryClassifier:
        raw = json.loads(path.read_text())
        return cls(weights={k: float(v) for k, v in raw["weights"].items()}, threshold=float(raw["threshold"]),
                   version=str(raw.get("version", "")))

    def p_heavy(self, text: str, previous: str | None = None) -> float:
        z = sum(self.weights.get(k, 0.0) * v for k, v in features(text, previous).items())
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def classify(self, text: str, previous: str | None = None) -> Classification:
        """`previous`: the user's message before this one, on a follow-up turn."""
        feats = features(text, previous)
        contrib = {k: self.weights.get(k, 0.0) * v for k, v in feats.items() if k != "bias"}
        z = self.weights.get("bias", 0.0) + sum(contrib.values())
        p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        label = "heavy" if p >= self.threshold else "light"
        sign = 1 if label == "heavy" else -1
        top = sorted((k for k in contrib if sign * contrib[k] > 0), key=lambda k: -sign * contrib[k])[:3]
        why = ", ".join(k.split(":", 1)[-1] for k in top) or "no strong signal"
        return Classification(label=label, p_heavy=p, reason=f"{label} (p_heavy={p:.2f}; {why})")


def rules_classify(text: str, previous: str | None = None) -> Classification:
    """Keyword rules on the message alone (`previous` is accepted for the classifiers' common signature)."""
    low = text.lower().strip()
    for name, rule in LIGHT_RULES:
        if rule.search(low):
            return Classification("light", 0.0, f"light ({name})")
    if len(tokens(low)) <= 4:
        return Classification("light", 0.0, "light (short)")
    for name, rule in HEAVY_RULES:
        if rule.search(low):
            return Classification("heavy", 1.0, f"heavy ({name})")
    return Classification("light", 0.0, "light (no heavy signal)")


@lru_cache(maxsize=1)
def default_classifier() -> QueryClassifier:
    return QueryClassifier.load()


@dataclass(frozen=True)
class RouteDecision:
    wanted: str
    reason: str
    label: str | None = None  # light | heavy in auto mode


def decide(*, text: str, routing: str, explicit_tier: str | None, prompt_tier: str | None, default_tier: str,
           classifier: QueryClassifier | None, previous: str | None = None) -> RouteDecision:
    """Which tier a request wants, and why (stored with the turn). Availability is checked by the caller.
    `previous`: the user's message before this one when the turn is a follow-up."""
    if explicit_tier:
        return RouteDecision(explicit_tier, f"explicit tier {explicit_tier}")
    if routing == "auto":
        result = (classifier or default_classifier()).classify(text, previous)
        tier = "smart" if result.label == "heavy" else "fast"
        return RouteDecision(tier, f"auto: {result.reason} -> {tier}", result.label)
    if prompt_tier:
        return RouteDecision(prompt_tier, f"fixed: prompt tier {prompt_tier}")
    return RouteDecision(default_tier, f"fixed: tenant default tier {default_tier}")
