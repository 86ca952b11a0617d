"""Report text clean-up before spaCy: decoding, markup stripping, sections, line breaks.

Everything here is regex on the raw string, once per report: cheaper than spaCy work per
section, and it lets the pipeline see only the text that may assert findings (DESIGN §6).
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass

EMPTY = "empty_report"
UNDECODABLE = "undecodable_text"
TOO_LONG = "report_too_long"
# A chest radiograph report is a few thousand characters; 500,000 is two orders of magnitude more.
# Longer "reports" are pasted documents or corrupt exports: quarantined whole (report_too_long),
# never truncated, so a label never rests on part of a text (README "Label extraction").
MAX_REPORT_CHARS = 500_000

# C0 controls other than whitespace, DEL, and the replacement character left by lossy decoders.
_CTRL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
_LETTER = re.compile(r"[^\W\d_]")
MAX_CONTROL_FRACTION = 0.02


@dataclass(frozen=True)
class Decoded:
    text: str | None
    reason: str | None = None  # a quarantine reason code when text is None
    message: str = ""


def decode_report(raw: object, max_chars: int = MAX_REPORT_CHARS) -> Decoded:
    """Text (or bytes) as a clean str, or the reason it must be quarantined.

    Bytes are UTF-8, falling back to cp1252. NUL padding or a stray control character is dropped;
    text that is mostly control characters (binary, NUL-filled) is undecodable.
    """
    if raw is None:
        return Decoded(None, EMPTY, "report text is missing")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = bytes(raw)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                return Decoded(None, UNDECODABLE, "report bytes are neither UTF-8 nor cp1252")
    elif isinstance(raw, str):
        text = raw
    else:
        return Decoded(None, UNDECODABLE, f"report text has type {type(raw).__name__}")
    if _CTRL.search(text):
        n_ctrl = len(_CTRL.findall(text))
        stripped = _CTRL.sub("", text)
        if n_ctrl > MAX_CONTROL_FRACTION * len(text) + 2 or not _LETTER.search(stripped):
            return Decoded(None, UNDECODABLE, f"report looks binary: {n_ctrl} control characters in {len(text)}")
        text = stripped
    if not text.strip():
        return Decoded(None, EMPTY, "report text is empty or whitespace")
    if len(text) > max_chars:
        return Decoded(
            None, TOO_LONG, f"report has {len(text):,} characters, more than the {max_chars:,} a report may have"
        )
    return Decoded(text)


# --------------------------------------------------------------------------- markup

_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,2000}>|<!--.*?-->|<![^<>]*>", re.S)
_HTML_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.S | re.I)
_HTML_BREAK = re.compile(r"<(?:br|/p|p|/div|div|/li|li|/tr|tr|/h[1-6]|h[1-6]|hr)\b[^<>]*>", re.I)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")


def strip_html(text: str) -> str:
    text = _HTML_DROP.sub(" ", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    return html.unescape(text)


_RTF_DESTINATIONS = re.compile(
    r"\{\\(?:\*|fonttbl|colortbl|stylesheet|info|listtable|listoverridetable|pict|header|footer|generator)"
)
_RTF_TOKEN = re.compile(
    r"\\'([0-9a-fA-F]{2})|\\u(-?\d+)\??|\\([a-zA-Z]+)(-?\d+)? ?|\\([{}\\])|\\[^a-zA-Z]|([{}])|([^\\{}]+)", re.S
)
_RTF_BREAKS = {"par", "line", "sect", "page", "row", "cell"}


def strip_rtf(text: str) -> str:
    """Plain text of an RTF document: skip destination groups, keep text and paragraph breaks."""
    out: list[str] = []
    depth = 0
    skip_depth: int | None = None
    for m in _RTF_TOKEN.finditer(text):
        hexchar, uni, word, _arg, escaped, brace, plain = m.groups()
        if brace == "{":
            depth += 1
            if skip_depth is None and _RTF_DESTINATIONS.match(text, m.start()):
                skip_depth = depth
            continue
        if brace == "}":
            if skip_depth is not None and depth == skip_depth:
                skip_depth = None
            depth -= 1
            continue
        if skip_depth is not None:
            continue
        if plain is not None:
            out.append(plain.replace("\r", "").replace("\n", ""))
        elif hexchar is not None:
            out.append(bytes([int(hexchar, 16)]).decode("cp1252", errors="replace"))
        elif uni is not None:
            code = int(uni) % 65536
            out.append(chr(code))
        elif escaped is not None:
            out.append(escaped)
        elif word is not None:
            if word in _RTF_BREAKS:
                out.append("\n")
            elif word == "tab":
                out.append(" ")
    return "".join(out)


def strip_markup(text: str) -> str:
    """Remove RTF or HTML markup when the text carries it; plain text is returned unchanged."""
    head = text[:200].lstrip()
    if head.startswith("{\\rtf"):
        return strip_rtf(text)
    if "<" in text and _HTML_TAG.search(text):
        return strip_html(text)
    if "&" in text and _ENTITY.search(text):
        return html.unescape(text)
    return text


# --------------------------------------------------------------------------- sections

ASSERTING = (
    "findings", "finding", "impressions", "impression", "conclusions", "conclusion", "opinion",
    "comments", "comment", "final report", "report", "summary", "addendum", "interpretation", "diagnosis",
    "result", "results",
)
NON_ASSERTING = (
    "indications", "indication", "clinical indications", "clinical indication", "history", "clinical history",
    "medical history", "past medical history", "relevant history", "clinical details", "clinical detail",
    "clinical information", "clinical info", "clinical notes", "clinical question", "clinical", "reason for exam",
    "reason for examination", "reason for study", "reason for request", "reason for referral", "reason",
    "comparisons", "comparison", "compared with", "prior", "priors", "previous", "technique", "examination",
    "exam", "procedure", "request", "referral", "question",
)
_KIND = {n: True for n in ASSERTING} | {n: False for n in NON_ASSERTING}
_NAMES = "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(_KIND, key=len, reverse=True))
# A multi-part report's sections by body part ("CHEST: ...", "LEFT WRIST: ..."): the chest part asserts
# chest findings, another part's fracture or degenerative change is no chest finding (issue 22).
_SIDE = r"(?:(?:left|right|bilateral|both|lt|rt|l|r)\.?\s+)?"
_CHEST = (r"(?:chest|thorax|cxr|ribs|rib\s+series|(?:pa|ap|portable|erect|supine|frontal)(?:\s+and\s+lateral)?"
          r"\s+chest|chest\s+(?:pa|ap)(?:\s+and\s+lateral)?)")
_OTHER_PART = (r"(?:wrists?|hands?|hips?|pelvis|knees?|ankles?|feet|foot|elbows?|forearms?|femurs?|femora|tibias?|"
               r"tibiae|fibulas?|humerus|humeri|shoulders?|abdomen|lumbar\s+spine|cervical\s+spine|"
               r"lumbosacral\s+spine|sacrum|coccyx|skull|facial\s+bones|sinuses|fingers?|thumbs?|toes?|legs?|"
               r"thighs?|heels?|calcaneus|kub|mandible|orbits?|nasal\s+bones)")
_VIEW = (
    r"(?:\s+(?:x-?rays?|xr|radiographs?|radiography|series|views?|films?|\d+\s+views?|(?:ap|pa)(?:\s+and\s+lateral)?))?"
)
_PART = rf"{_SIDE}(?:{_CHEST}|{_OTHER_PART}){_VIEW}"
_CHEST_PART = re.compile(rf"{_SIDE}{_CHEST}{_VIEW}", re.I)
# A header starts a line (or follows a sentence end) and ends with a colon, or is alone on its line
# in capitals. "no history of trauma" is not a header: it has no colon.
_HEADER_END = r"[ \t]*(?::[ \t]*|-[ \t]+|(?P<bare>[ \t]*(?=\n|$)))"
_HEADER = re.compile(rf"[ \t]*(?:[-*#•]+[ \t]*)?(?P<name>{_NAMES}){_HEADER_END}", re.I | re.M)
_PART_HEADER = re.compile(rf"[ \t]*(?:[-*#•]+[ \t]*)?(?P<name>{_PART}){_HEADER_END}", re.I | re.M)
_FIRST_WORD = re.compile(r"[ \t]*(?:[-*#•]+[ \t]*)?([A-Za-z]+)")
# the words a body-part header may start with: the regex above runs only after one of them
_PART_FIRST = frozenset(v for w in re.findall(r"[a-z]+", _SIDE + _CHEST + _OTHER_PART) for v in (w, w.rstrip("s"))
                        if v) - {"s", "and", "lateral"}
_CANDIDATE = re.compile(r"[\n.;!]")  # headers start the text, a line, or follow a sentence end
# the words a section name starts with: the big regexes run only after one of them
_NAME_FIRST = frozenset(n.split()[0] for n in _KIND)


def _headers(text: str):
    """Header matches, trying the regexes only where a header may start (fast on long reports): a section
    name at the text's start, a line's or after a sentence end; a body part at a line's start."""
    last_end = 0
    for pos in (0, *(m.end() for m in _CANDIDATE.finditer(text))):
        if pos < last_end:
            continue
        word = _FIRST_WORD.match(text, pos)
        if word is None:
            continue
        first = word.group(1).lower()
        m = _HEADER.match(text, pos) if first in _NAME_FIRST else None
        if m is None and first in _PART_FIRST and (pos == 0 or text[pos - 1] == "\n"):  # a body part starts a line
            m = _PART_HEADER.match(text, pos)
        if m:
            last_end = m.end()
            yield m


def _header_kind(match: re.Match[str]) -> bool | None:
    name = " ".join(match.group("name").lower().split())
    if match.group("bare") is not None and not match.group("name").isupper():
        return None  # "Report" alone on a line in running text is not a header
    if name in _KIND:
        return _KIND[name]
    return _CHEST_PART.fullmatch(name) is not None  # a body part: only the chest asserts chest findings


def asserting_text(text: str) -> str:
    """The parts of a report that may assert findings, joined by line breaks.

    Text under INDICATION, HISTORY, CLINICAL DETAILS, COMPARISON or TECHNIQUE is dropped, so its
    "? pneumonia" never counts. A report without headers asserts throughout; text before the first
    header (a title line) is kept.
    """
    parts: list[str] = []
    pos = 0
    keep = True
    for m in _headers(text):
        kind = _header_kind(m)
        if kind is None:
            continue
        if keep:
            parts.append(text[pos:m.start()])
        keep = kind
        pos = m.end()
    if keep:
        parts.append(text[pos:])
    return "\n".join(parts)


# --------------------------------------------------------------------------- line breaks

_SPACES = re.compile(r"[ \t\f\v\u00a0]{2,}|[\t\f\v\u00a0]")


def normalise_lines(text: str) -> str:
    """One space between words, one "\\n" per line break; wrapped lines are re-joined.

    A kept "\\n" ends a sentence (the sentencizer treats it as punctuation): report lines are
    often findings without a full stop ("No pneumothorax\\nSmall left effusion").
    """
    if "\n" in text:
        out: list[str] = []
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                continue
            if out and (line[0].islower() or line[0] == "(") and out[-1][-1] not in ".;:!?":
                out[-1] = f"{out[-1]} {line}"  # a wrapped line continues in lower case
            else:
                out.append(line)
        text = "\n".join(out)
    text = _SPACES.sub(" ", text)
    return text.strip()


# --------------------------------------------------------------------------- de-identification placeholders

# "XXXX" (Open-I style), "***", "___" (MIMIC style), "[REDACTED]", "[**Name**]": one neutral token each,
# so a placeholder never splits a sentence or breaks a negation's list ("no XXXX, effusion or ...").
PLACEHOLDER = "XXXX"
_PLACEHOLDER = re.compile(
    r"\[\*\*[^\]\n]{0,60}\*\*\]"
    r"|\[\s*(?:redacted|removed|deleted|anonymi[sz]ed|de-identified|name|date|patient|doctor|dr|mrn|id|phone|"
    r"address|location|hospital|age|number)[^\]\n]{0,30}\]"
    r"|\b[Xx]{3,}\b|\*{3,}|_{2,}|#{3,}",
    re.I,
)


def normalise_placeholders(text: str) -> str:
    if not any(c in text for c in ("XXX", "xxx", "Xxx", "***", "__", "###", "[")):
        return text
    return _PLACEHOLDER.sub(PLACEHOLDER, text)


def prepare(text: str) -> str:
    """Decoded report text → the text spaCy sees."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return normalise_lines(normalise_placeholders(asserting_text(strip_markup(text))))
