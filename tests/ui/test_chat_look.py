"""The chat page's share tags, its signed-out mark and Chainlit's translation noise, as plain functions (the served
page and a whole session are tests/browser/test_chat_quiet.py)."""

from __future__ import annotations

import gzip
import json
import logging
import re
import tomllib

from tests.conftest import REPO
from ui.offline_page import SIGNED_OUT_MARK, _signed_out, _strip
from ui.surface import _NotTranslated

HEAD = b"""<html><head><title>Atrium</title>
    <meta name="description" content="Atrium: your department's AI assistant.">
    <meta property="og:title" content="Atrium">
    <meta property="og:image" content="https://chainlit-cloud.s3.eu-west-3.amazonaws.com/logo/chainlit_banner.png">
    <meta property="og:url" content="https://github.com/Chainlit/chainlit">
    <meta property="og:root_path" content="/chat">
    <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.22/dist/katex.min.css" />
</head><body></body></html>"""


def test_share_tags_name_atrium_or_nothing():
    _, body = _strip([(b"content-type", b"text/html")], HEAD)
    assert b"chainlit" not in body.lower() and b"https://" not in body
    assert b'<meta property="og:title" content="Atrium">' in body
    assert b'<meta property="og:root_path" content="/chat">' in body  # atrium.js reads it
    assert SIGNED_OUT_MARK not in body


def test_a_page_asked_without_a_session_cookie_is_marked_signed_out():
    headers = [(b"content-type", b"text/html"), (b"content-encoding", b"gzip")]
    out_headers, body = _strip(headers, gzip.compress(HEAD), signed_out=True)
    assert body.count(SIGNED_OUT_MARK) == 1 and body.index(SIGNED_OUT_MARK) < body.index(b"</head>")
    assert (b"content-encoding", b"gzip") not in out_headers

    def scope(cookie: str | None) -> dict:
        return {"headers": [(b"cookie", cookie.encode())] if cookie is not None else []}

    assert _signed_out(scope(None)) and _signed_out(scope("")) and _signed_out(scope("theme=dark; other=1"))
    assert not _signed_out(scope("access_token=abc"))
    assert not _signed_out(scope("x=1; access_token_0=abc; access_token_1=def"))  # a long session, split


def test_chainlits_translation_fallbacks_are_not_warnings_in_the_log():
    quiet = _NotTranslated()

    def passes(message: str) -> bool:
        return quiet.filter(logging.makeLogRecord({"msg": message, "levelno": logging.WARNING}))

    assert not passes("Translation file for en-GB not found. Using default translation en-US.")
    assert not passes("Translation file for de-CH not found. Using parent translation de.")
    assert not passes("Translated markdown file for fr-FR not found. Defaulting to chainlit.md.")
    assert passes("Error creating user: the database is gone")
    assert passes("Translation file for en-GB could not be parsed")


# "Thread" as each shipped language's chat said it (Chainlit's own words, and loanwords of the English one).
THREAD_WORDS = re.compile(r"thread|νήμα|νήματ|থ্রেড|થ્રેડ|थ्रेड|ത്രെഡ്|థ్రెడ్|ಥ್ರೆಡ್|த்ரெட்|tråd|\bhilos?\b|\bfils?\b|"
                          r"スレッド|스레드|\bdraad|线程|執行緒", re.I)


def test_every_shipped_language_says_conversation_not_thread():
    """The English words say "conversations" (tests/browser/test_chat_quiet.py); so does every translation we ship,
    in its own words (e.g. Unterhaltung, conversación, 会話, 대화, बातचीत)."""
    def texts(tree: dict) -> list[str]:
        return [t for v in tree.values() for t in (texts(v) if isinstance(v, dict) else [str(v)])]

    files = sorted((REPO / ".chainlit" / "translations").glob("*.json"))
    assert len(files) == 23
    said = {f.stem: [t for t in texts(json.loads(f.read_text(encoding="utf-8"))) if THREAD_WORDS.search(t)]
            for f in files}
    assert {lang: found for lang, found in said.items() if found} == {}
    german = json.loads((REPO / ".chainlit" / "translations" / "de-DE.json").read_text(encoding="utf-8"))
    assert german["threadHistory"]["thread"]["untitled"] == "Unbenannte Unterhaltung"


def test_the_chats_accepted_file_types_are_all_ones_react_dropzone_takes():
    """public/atrium.js drops react-dropzone's warning about "application/*" (Chainlit's fallback list, drawn before
    the chat has its settings): that is only right while the configured list has no entry the warning is about."""
    config = tomllib.loads((REPO / ".chainlit" / "config.toml").read_text(encoding="utf-8"))
    accept = config["features"]["spontaneous_file_upload"]["accept"]
    # react-dropzone's isMIMEType, as its bundle has it (unanchored: "application/*" is what it refuses)
    valid = re.compile(r"^(audio|video|image|text)/\*$|\w+/[-+.\w]+")
    assert accept and all(valid.search(t) for t in accept), accept
    assert "application/*" not in accept
    script = (REPO / "public" / "atrium.js").read_text(encoding="utf-8")
    listed = re.search(r"const ACCEPTED_TYPES = \[(.*?)\];", script, re.S)
    assert listed and re.findall(r'"([^"]+)"', listed.group(1)) == accept  # atrium.js part 2 names the same types
