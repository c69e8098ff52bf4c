"""Does a chat message need the knowledge base? Decided locally, in microseconds, by rules.

The chat pipeline refuses ("I don't know") when retrieval finds no relevant passage, so that the model never
invents company facts. That refusal is wrong for messages that never needed a passage: conversation
("hi", "thanks, that fixed it", "are you the sales assistant?") and tasks on text the user supplies
(rewrite / translate / title / classify / summarise *this* text, a code question that carries its code).
ChatService asks `needs_knowledge` only when retrieval came back empty, so this costs nothing on the path
where passages are found.

Conservative by construction: a message is a knowledge question unless a rule recognises all of it. A greeting
with a question attached ("hi, what's the discount cap?"), a task whose text is not supplied ("rewrite our
refund policy"), code questions without code ("write a script for our deploy API") and classifications into
categories the message does not list all keep the refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.llm.text_rules import CODE_RE, LIGHT_RULES

_LIGHT = dict(LIGHT_RULES)  # rewrite and classification openers, shared with auto routing


@dataclass(frozen=True, slots=True)
class KnowledgeNeed:
    needed: bool
    reason: str  # e.g. "greeting", "rewrite of supplied text"; "company question" when needed

    @property
    def context(self) -> str:
        """What the prompt's {{context}} says when no passage was needed (the prompts answer only from it)."""
        return (f"(no passages from the knowledge base: none are needed for this message ({self.reason}). "
                "Answer from the message and the conversation alone; state no company facts they do not contain.)")


KNOWLEDGE = KnowledgeNeed(True, "company question")

# -- conversation -------------------------------------------------------------------------------------------

# Greetings, thanks and acknowledgements in English and, for the words people type most, German, French, Spanish,
# Italian, Dutch and Portuguese (a message in those languages that asks anything still needs the knowledge base).
_GREETING = (r"(?:hi+|hello+|hey+|hiya|heya|yo|howdy|greetings|good (?:morning|afternoon|evening|day)|"
             r"morning|afternoon|evening|gm|"
             r"hall[oö]+|hall[oö]chen|servus|moin(?: moin)?|guten (?:morgen|tag|abend)|gr[üu](?:ß|ss) gott|gr[üu]ezi|"
             r"bonjour|bonsoir|salut|coucou|"
             r"hola|buen[oa]s(?: (?:d[ií]as|tardes|noches))?|"
             r"ciao|buongiorno|buon pomeriggio|buonasera|salve|"
             r"hoi|goede(?:morgen|middag|navond)|goeiemorgen|"
             r"ol[aá]|oi|bom dia|boa (?:tarde|noite))")
_THANKS = (r"(?:thanks?(?: you)?|thank u|thankyou|thx|thnx|thanx|tx|ty|tyvm|tysm|cheers|ta|many thanks|big thanks|"
           r"much appreciated|appreciated|(?:i )?appreciate (?:it|that|the help|your help)|"
           r"danke(?: sch[öo]n| sehr)?|dankesch[öo]n|vielen dank|herzlichen dank|"
           r"merci(?: beaucoup| bien| mille fois)?|mille mercis|"
           r"(?:muchas |mil )?gracias|grazie(?: mille)?|molte grazie|"
           r"dank (?:je|u)(?: wel)?|dankjewel|bedankt|hartelijk dank|"
           r"(?:muito )?obrigad[oa]|valeu)")
_ACK = (r"(?:ok(?:ay|ey|ie)?|k|kk|okidoki|great|perfect|cool|awesome|nice|brilliant|lovely|super|excellent|amazing|"
        r"wonderful|fantastic|fab|sweet|ace|nice one|good one|good stuff|"
        r"got it|gotcha|noted|understood|i see|roger(?: that)?|alright|all right|fair enough|"
        r"sounds good|all good|all set|all sorted(?: now)?|will do|makes sense|"
        r"no worries|no problem|np|never ?mind|nvm|forget it|"
        r"good job|great job|nice work|great work|well done|good bot|you rock|lifesaver|"
        r"you(?:'re| are) (?:a |the )?(?:best|star|lifesaver|legend|awesome|amazing|great)|"
        r"(?:that(?:'s| is| was)|this is|it(?:'s| is| was)) (?:(?:really|very|super|so) )?(?:great|perfect|helpful|"
        r"useful|clear|exactly what i needed|what i needed|all i needed)|"
        r"that(?:'s| is| was) (?:it|all|everything)|"
        r"(?:(?:really|very|super|so) )?helpful|"
        r"that(?:'ll| will) (?:be all|do)|nothing (?:else|more)|no (?:more|other|further) questions|all done|"
        r"(?:i'm|i am|we're|we are) (?:good|done|all set|sorted)|"
        r"(?:that|this|it) (?:helps|helped)|"
        r"that (?:fixed|solved|answers|answered|explains|helps|helped|works|worked|did) it|"
        r"that (?:saves|saved) me [\w' ]{1,40}|(?:this|that|it) works|bye(?: bye)?|goodbye|see you|see ya|cya|"
        r"later|ttyl|take care|talk (?:to you )?(?:later|soon)|catch you later|good ?night|night|gn|"
        r"have a (?:good|great|nice) (?:day|one|weekend|evening|week)|nice to meet you|wish me luck|"
        r"alles (?:klar|gut)|passt|prima|perfekt|sehr gut|tsch[üu]ss|bis (?:bald|später|dann)|"
        r"sch[öo]nen (?:tag|abend)|"
        r"d'accord|parfait|g[ée]nial|ça marche|c'est (?:bon|parfait|top|not[ée])|tr[èe]s bien|au revoir|"
        r"[àa] (?:bient[ôo]t|plus)|bonne (?:journ[ée]e|soir[ée]e)|"
        r"vale|perfecto|de acuerdo|muy bien|adi[óo]s|hasta (?:luego|pronto)|chao|chau|"
        r"perfetto|va bene|d'accordo|ottimo|arrivederci|a presto|"
        r"top|ok[ée]|helemaal goed|tot ziens|doei|fijne dag|"
        r"perfeito|[óo]timo|beleza|tchau|at[ée] (?:logo|mais)|tudo (?:bem|certo)|combinado)")
# Laughter and reactions ("lol", "haha", "wow"): the model answers them, as a person would.
_REACTION = (r"(?:(?:ha){2,}h?|a?ha|hah|he(?:he)+|hi(?:hi)+|lo+l+|lmf?ao|rofl|xd+|(?:ja){2,}|(?:je){2,}|(?:ks){2,}|"
             r"(?:kk){2,}|mdr|ptdr|wow+|whoa|woah|omg|yay+|woo+(?:hoo+)?|phew|hmm+|mhm+|uh huh)")
# Who a greeting addresses ("hi Atrium", "morning all", "hi finance bot").
_ADDRESS = (r"(?:again|there|all|everyone|everybody|folks|friend|mate|atrium|(?:[\w-]+ )?(?:bot|assistant|team)|"
            r"zusammen|à tous|tout le monde|a todos|a tutti|allemaal|pessoal)")
# What may follow a greeting or a thanks in the same clause: who is addressed, "so much", "for the help …".
_TAIL = (rf"(?:\s+(?:{_ADDRESS}|so much|a lot|a ton|a bunch|very much|a million|heaps|kindly|in advance|"
         r"(?:for )?now|for today|"
         r"for (?:the|your|all the|all your) (?:help|answer|answers|info|tips?|pointers?|explanation)"
         r"(?: \w+){0,5}|"
         r"from (?:the )?[\w-]+(?: [\w-]+)? (?:office|team)))*")
# "no, that's it", "yes thanks": a yes or a no opens a social clause; alone it is an answer to an earlier
# question of the assistant's ("yes" = "go on"), which may need passages.
_YES_NO = r"(?:no|nope|nah|yes|yeah|yep|yup)"
_SOCIAL_RE = re.compile(rf"^(?:{_YES_NO}\s+)?(?:(?:{_GREETING}|{_THANKS}|{_ACK}|{_REACTION})\b{_TAIL}\s*)+$")
_THANKS_RE = re.compile(rf"(?:{_YES_NO}\s+)?(?:{_THANKS}|{_ACK})\b")
_REACTION_RE = re.compile(rf"(?:{_YES_NO}\s+)?{_REACTION}\b")
_YES_NO_CLAUSE_RE = re.compile(rf"^{_YES_NO}$")
_ADDRESS_RE = re.compile(rf"^{_ADDRESS}(?: {_ADDRESS})*$")
# Small talk about the assistant itself.
_ABOUT_YOU_RE = re.compile(
    r"^(?:(?:are|r) (?:you|u)(?: (?:a|an|the|my))?(?: [\w-]+){0,2}(?: (?:assistant|bot|ai|human|real|there|"
    r"working|online|awake|alive))?"
    r"|can (?:you|u) (?:hear|see|read) me|(?:is )?(?:any ?one|anybody|some ?one|somebody) (?:there|here|home)"
    r"|is this (?:the |a )?(?:[\w-]+ )?(?:assistant|bot|chat|thing) ?(?:on|working)?"
    r"|(?:can|could|will|would) (?:you|u) help(?: me| us)?(?: out)?(?: with (?:this|that|something|"
    r"(?:some |a few )?(?:[\w-]+ )?(?:stuff|things|questions)))?"
    r"|(?:are you )?ready to help(?: me)?(?: [\w']+){0,6}|ready for (?:some|a few|my) questions"
    r"|how are (?:you|u|things)(?: doing| today)?|how's it going|what'?s up|sup|who are you|what are you"
    r"|what can (?:you|u) do(?: for (?:me|us))?|what do you do|does this (?:thing )?work"
    r"|(?:what|how) (?:can|could) (?:you|u) help(?: me| us)?(?: with)?(?: today)?"
    r"|what (?:can|could) i ask(?: you)?(?: about)?|what do you know|what are you (?:for|good at))$")
# A statement that may accompany a greeting or a thanks: it must be about the user or the exchange
# ("I'm new on the SDR team", "closing the ticket now"), not a bare topic ("hi, discount cap for Acme").
_PERSONAL_RE = re.compile(r"\b(?:i|i'm|im|i'll|i've|i'd|me|my|we're|we've|you|you're|"
                          r"everything|nothing|just|first|new|incoming|coming up|went through|signed off|"
                          r"sorted|closing|done|luck|weekend)\b")
_ASKING_RE = re.compile(r"\b(?:what|what's|whats|when|where|which|who|whom|whose|why|how|tell|give|show|list|"
                        r"explain|find|check|confirm|look up|lookup|send|share|remind|need|want|wondering|"
                        r"calculate|compare|describe|define|can|could|would|should|is|are|am|does|do|did|please|"
                        r"looking|searching|know|allowed|entitled|eligible|policy|policies|rules?|limits?|"
                        r"thresholds?|price|prices|pricing|costs?|approve|approval)\b")
_NUMERIC_RE = re.compile(r"[\d$€£%]")
_FILLER_RE = re.compile(r"^(?:er+|um+|uh+|oh|ah|so|well|and|but|also|btw|anyway|oops)\b\s*")
_CLAUSE_SPLIT_RE = re.compile(r"\s*(?:[,.!?;:\n()]+|\s[—–-]+\s|[—–]|\.\.\.)\s*")
# Emoticons (":)", ";-P", ":D", "<3", "^_^"), removed like emoji; not after a colon-like mark, so "re:d…" stays.
_EMOTICON_RE = re.compile(r"(?<![:;=])[:;=][-'^o]?[()\[\]dpo3|*]+(?!\w)|<3+|\^_*\^")
_SYMBOLS_RE = re.compile(r"[^\w\s'’,.!?;:—–()\-$€£%]")
_WORDLESS_RE = re.compile(r"^[^\w$€£%]+$")  # emoji, emoticons or punctuation only: "👍", "?", "…", ":)"


def _conversational(text: str) -> str | None:
    if _WORDLESS_RE.match(text):
        return "emoji or punctuation only"  # "?" alone too: the model asks what they need
    low = _EMOTICON_RE.sub(" ", text.lower().replace("’", "'"))
    if _WORDLESS_RE.match(low):
        return "emoji or punctuation only"
    low = _SYMBOLS_RE.sub(" ", low)
    if len(low.split()) > 40:
        return None
    clauses = [_FILLER_RE.sub("", c).strip() for c in _CLAUSE_SPLIT_RE.split(low)]
    clauses = [c for c in clauses if c]
    if not clauses:
        return None
    kinds: list[str] = []
    for clause in clauses:
        if _SOCIAL_RE.match(clause):
            kinds.append("reaction" if _REACTION_RE.match(clause) else
                         "thanks" if _THANKS_RE.match(clause) else "greeting")
        elif _ADDRESS_RE.match(clause) or _YES_NO_CLAUSE_RE.match(clause):
            kinds.append("")  # "good evening, Atrium"; the "no" of "no, thanks"
        elif _ABOUT_YOU_RE.match(clause):
            kinds.append("small talk")
        elif (len(clause.split()) <= 15 and _PERSONAL_RE.search(clause) and not _ASKING_RE.search(clause)
              and not _NUMERIC_RE.search(clause)):
            kinds.append("")  # a harmless remark; not enough on its own
        else:
            return None
    named = [k for k in kinds if k]
    if not named or ("" in kinds and "?" in text and "small talk" not in named):
        return None  # only remarks, or a remark asked as a question ("hi, that's the cap?")
    return "small talk" if "small talk" in named else named[0]


def conversational(message: str) -> str | None:
    """The kind of a purely social message ("greeting", "thanks", "reaction", "small talk", "emoji or
    punctuation only"), else None. Such a message needs no retrieval query either (backend/chat/rewrite.py)."""
    text = message.strip()
    return _conversational(text) if text else None


# -- tasks on supplied text ----------------------------------------------------------------------------------

_QUOTED_RE = re.compile(r"(?<![\w])([\"“‘']|``?)(?P<body>.{3,}?)(?:[\"”’']|``?)(?![\w])", re.S)
_FENCE_RE = re.compile(r"```.*?(?:```|$)", re.S)
_PASTED_RE = re.compile(r"^\s*[\[<(]\s*(?:pasted|paste|attached|text|code|snippet)[^\]>)]*[\]>)]\s*$", re.I)
_POLITE_RE = re.compile(r"^(?:(?:hi|hey|hello|ok|okay|so|quick one|quick question)[,!.]?\s+)?"
                        r"(?:(?:can|could|would|will) (?:you|u)(?: please| pls)?\s+|please\s+|pls\s+|kindly\s+|"
                        r"i need you to\s+|i'd like you to\s+|help me\s+)?")
_REWRITE_RE = re.compile(
    r"^(?:rewrite|reword|rephrase|paraphrase|shorten|simplify|tighten|polish|proofread|condense|soften|"
    r"reformat|format|edit|improve|correct|summari[sz]e|tl;?dr|translate|make (?:this|that|it|these|the following)|"
    r"turn (?:this|that|these|it|the following)|convert (?:this|that|these|it|the following)|clean up|tidy up|"
    r"fix (?:the |my |this )?(?:grammar|typos?|spelling|punctuation|wording|tone)|"
    r"say (?:this|it|that)|put (?:this|it) (?:in|into)|"
    r"(?:give me |suggest |what's |what is )?an? (?:softer|nicer|politer|kinder|gentler|better|shorter|"
    r"friendlier|clearer|more \w+|less \w+) (?:way|version|wording|phrasing))\b")
_TITLE_RE = re.compile(
    r"^(?:(?:suggest|give(?: me)?|propose|come up with|write|need|pick|recommend|think of|i need|i want)"
    r"(?: me)?(?: (?:a|an|the))?(?: [\w,'-]+){0,3}? (?:title|name|subject line|subject|headline|heading)\b(?! of\b)"
    r"|give (?:this|that|my|these|the) [^.?!;]{1,80}? (?:a|an)(?: [\w-]+){0,2}? (?:title|name)\b"
    r"|name (?:this|that|my|these)\b|name for\b"
    r"|(?:(?:a|an|the) )?(?:[\w-]+ ){0,2}?(?:title|subject line|subject|headline)(?: for\b| please\b|\s*:|\s*$)"
    r"|(?:[\w-]+ )?name for\b)")
_YES_NO_RE = re.compile(r"\byes or no\b|\by/n\b")
_OPTIONS_RE = re.compile(r"\b[\w-]+(?:, [\w-]+(?: [\w-]+)?)*,? or (?:not )?(?:an? )?[\w-]+\b")
# "Summarise …" needs "this"/"the following": "summarise the travel policy: flights, hotels" names topics.
_SUMMARY_RE = re.compile(r"^(?:summari[sz]e|sum up|condense|tl;?dr|recap)\b")
# Classifying a text (its sentiment, tone, kind) needs no company facts; classifying a case (an expense, a deal,
# a ticket's severity) under the company's rules does, even with the options listed.
_TEXT_KIND_RE = re.compile(r"\b(?:message|e-?mail|reply|response|review|feedback|comment|text|sentence|paragraph|"
                           r"tweet|post|objection|sentiment|tone|language)\b")
# A task that asks for facts the text does not hold ("rewrite this with the correct discount cap").
_FACT_ASK_RE = re.compile(r"\b(?:add|include|insert|fill in|verify|fact-?check|check (?:it|this|that|if|whether)|"
                          r"update (?:it|this|that|them) (?:with|to)|update with|"
                          r"(?:correct|current|latest|actual|accurate|official|real|right) (?:[\w-]+ )?(?:figures?|"
                          r"numbers?|prices?|pricing|cap|limits?|polic(?:y|ies)|rules?|terms|dates?|values?|rates?))\b")
_CLASSIFY_RE = re.compile(r"^(?:classify|categori[sz]e|tag|label|sort|triage|sentiment|tone|is (?:this|it)|"
                          r"which (?:category|label|one)|what (?:category|label|sentiment|tone|language))\b")
_CODE_TASK_RE = re.compile(r"\b(?:this|these|the following|below|above|it|here)\b")
_CODE_MARK_RE = re.compile(r"[{}();=<>\[\]]|\b(?:def|class|select|from|return|import|function|const|let|var)\b")
_COMPANY_RE = re.compile(r"\b(?:our|we|us|company|internal|convention|conventions|standard|standards|"
                         r"policy|policies|guideline|guidelines|style guide|allowed|approved)\b")
_PREVIOUS = r"(?:that|it|this|your (?:last )?(?:answer|reply|message|response)|the (?:last )?(?:answer|reply|above))"
_FOLLOW_UP_RE = re.compile(rf"\b{_PREVIOUS}\b")
# After the task's verb, the previous answer is its object ("summarise that", "a shorter version of your answer");
# a "that" further on starts a clause about something else ("summarise every rule that applies to …").
_FOLLOW_UP_OBJECT_RE = re.compile(rf"^\s*(?:all |just |only )?(?:of |for |in |into |to )?{_PREVIOUS}\b")
_DEICTIC_RE = re.compile(r"\b(?:this|these|the following|below|above|here)\b", re.I)
# A second request inside the task's sentence ("give me a title and also tell me the discount cap").
_SECOND_ASK_RE = re.compile(r"\b(?:and|also|then|plus)\b,?\s+(?:also\s+)?(?:what|what's|when|where|which|who|"
                            r"how|why|tell|explain|list|show|give me|remind|check|find|look up)\b")
_SENTENCE_RE = re.compile(r"(?<=[.?!;])\s+|\n+")
_QUESTION_START_RE = re.compile(r"^(?:and |also |but |so |btw )*(?:what|what's|whats|when|where|which|who|whom|"
                                r"whose|why|how|tell me|explain|list|show me|look up|remind me|is|are|does|do|did|"
                                r"can|could|should|would|will)\b")


def _split_supplied(text: str) -> tuple[str, bool, bool]:
    """(instruction, text supplied?, code supplied?): quoted spans, a fenced block, the text after a colon,
    or lines pasted under the first one are the user's own material; the rest is the instruction."""
    code = bool(_FENCE_RE.search(text))
    rest = _FENCE_RE.sub(" ", text)
    quotes = list(_QUOTED_RE.finditer(rest))
    code = code or any(m.group(1).startswith("`") and len(m.group("body")) >= 20
                       and _CODE_MARK_RE.search(m.group("body").lower()) for m in quotes)
    instruction = _QUOTED_RE.sub(" ; ", rest)  # "; ": what follows a quote is a sentence of its own
    lines = [ln for ln in instruction.splitlines() if ln.strip()]
    if len(lines) >= 3:  # a pasted block under an instruction line
        code = code or sum(bool(_CODE_MARK_RE.search(ln.lower())) for ln in lines[1:]) >= 2
        return " ".join(lines[0].split()), True, code
    head, colon, tail = instruction.partition(":")
    # A quote or a colon marks the user's own text only when the instruction points at it ("this email:",
    # "Paraphrase: '…'"); "Summarize every rule for suppliers: PO, quotes" lists topics, not text.
    deictic, words = bool(_DEICTIC_RE.search(head)), len(head.split())
    supplied = code or (bool(quotes) and (deictic or words <= 8))
    if (colon and (len(tail.split()) >= 3 or _PASTED_RE.match(tail)) and not supplied
            and (deictic or (words <= 5 and not _COMPANY_RE.search(head.lower())))):
        supplied = True
        code = bool(_PASTED_RE.match(tail)) or len(_CODE_MARK_RE.findall(tail.lower())) >= 3
        instruction = head
    return " ".join(instruction.split()), supplied, code


def _only_one_request(instruction: str) -> bool:
    """No second request next to the task ("rewrite this … and what is our refund window?")."""
    sentences = [s for s in _SENTENCE_RE.split(instruction) if s.strip(" .?!;")]
    return not any(_QUESTION_START_RE.match(s.strip().lower()) for s in sentences[1:])


def _task(text: str, *, follow_up: bool) -> str | None:
    instruction, supplied, code = _split_supplied(text)
    low = instruction.lower().replace("’", "'")
    if _SECOND_ASK_RE.search(low) or _FACT_ASK_RE.search(low):
        return None
    sentences = [s.strip() for s in _SENTENCE_RE.split(low) if s.strip(" .?!;")]
    if not sentences:
        return None
    # The task may follow a description ("I just pasted a thread … I need a short title for it.").
    for i, sentence in enumerate(sentences):
        ask = _POLITE_RE.sub("", sentence, count=1)
        others = sentences[:i] + sentences[i + 1:]
        if any(_QUESTION_START_RE.match(s) for s in others):
            continue
        if _TITLE_RE.match(ask):
            return "title request"
        if i == 0 and (verb := _REWRITE_RE.match(ask) or _LIGHT["rewrite"].match(ask)):
            if supplied and (not _SUMMARY_RE.match(ask) or _DEICTIC_RE.search(ask)):
                return "rewrite of supplied text"
            if follow_up and (_FOLLOW_UP_RE.search(verb.group(0)) or _FOLLOW_UP_OBJECT_RE.match(ask[verb.end():])):
                return "rewrite of the previous answer"
        if (i == 0 and supplied and not code and (_CLASSIFY_RE.match(ask) or _LIGHT["classification"].match(ask))
                and _OPTIONS_RE.search(ask) and not _YES_NO_RE.search(ask) and _TEXT_KIND_RE.search(ask)
                and _QUOTED_RE.search(text)):
            return "classification of supplied text into the options it lists"
    if code and _only_one_request(instruction) and not _COMPANY_RE.search(low) and (
            CODE_RE.search(low) or _CODE_TASK_RE.search(low)):
        return "code question with its own code"
    return None


# On a follow-up: a question about the conversation itself ("which deal did I mention?"), answered from the
# history, not from the knowledge base.
_ABOUT_CONVERSATION_RE = re.compile(
    r"\b(?:did|have) (?:i|we|you) (?:just )?(?:mention|say|ask|tell|write|type|discuss|talk about|suggest|"
    r"recommend)"
    r"|\b(?:i|we) (?:just )?(?:mentioned|said|asked|told you|wrote|discussed|talked about) (?:earlier|before|above)"
    r"|\b(?:summari[sz]e|recap) (?:our|this|the) (?:conversation|chat|discussion)"
    r"|\bwhat (?:was|were) my (?:last|previous|first|earlier) (?:question|message)s?\b")


def needs_knowledge(message: str, *, follow_up: bool = False) -> KnowledgeNeed:
    """Whether `message` needs passages from the knowledge base; when not, why (stored in the route reason).

    `follow_up`: the conversation has earlier turns ("make it shorter" then works on the previous answer)."""
    text = message.strip()
    if not text:
        return KNOWLEDGE
    if kind := _conversational(text):
        return KnowledgeNeed(False, kind)
    if kind := _task(text, follow_up=follow_up):
        return KnowledgeNeed(False, kind)
    if follow_up and _ABOUT_CONVERSATION_RE.search(text.lower().replace("’", "'")):
        return KnowledgeNeed(False, "question about this conversation")
    return KNOWLEDGE
