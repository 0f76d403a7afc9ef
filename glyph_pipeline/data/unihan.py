"""Read Unicode's Unihan database (``kDefinition``, ``kRSUnicode``) and turn definitions into captions.

Unihan is the source of the English definitions the glyph model is conditioned on. It ships as
Unicode's ``Unihan.zip`` (one ``Unihan_*.txt`` per topic) and, on Debian/Ubuntu, in the ``unicode-data``
package as ``/usr/share/unicode/Unihan_*.txt.bz2``. Both layouts, a single ``.txt``/``.bz2`` file and a
directory are accepted. The data is under the Unicode licence (https://www.unicode.org/license.txt);
keep that notice with datasets built from it.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

UNIHAN_LICENSE_NOTE = (
    "Definitions and radical/stroke data: Unicode Unihan database, (c) Unicode, Inc., "
    "Unicode License v3 (https://www.unicode.org/license.txt)."
)

# Where Debian/Ubuntu's `unicode-data` package (and a few other distributions) put the UCD.
DEFAULT_UNIHAN_DIRS: tuple[str, ...] = (
    "/usr/share/unicode",
    "/usr/share/unicode-data",
    "/usr/share/unicode/ucd",
)

# The Unihan files holding the fields we need. kRSUnicode moved from RadicalStrokeCounts to IRGSources in
# Unicode 13; ``Unihan.txt`` is the pre-2010 single-file layout.
_UNIHAN_STEMS = ("Unihan_Readings", "Unihan_IRGSources", "Unihan_RadicalStrokeCounts", "Unihan")
_FIELDS = ("kDefinition", "kRSUnicode")

# CJK ideograph blocks, in the order they were encoded. Ranges are inclusive.
BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "uro": ((0x4E00, 0x9FFF),),
    "ext-a": ((0x3400, 0x4DBF),),
    "ext-b": ((0x20000, 0x2A6DF),),
    "ext-c": ((0x2A700, 0x2B73F),),
    "ext-d": ((0x2B740, 0x2B81F),),
    "ext-e": ((0x2B820, 0x2CEAF),),
    "ext-f": ((0x2CEB0, 0x2EBEF),),
    "ext-i": ((0x2EBF0, 0x2EE5F),),
    "ext-g": ((0x30000, 0x3134F),),
    "ext-h": ((0x31350, 0x323AF),),
    "ext-j": ((0x323B0, 0x3347F),),
    "compat": ((0xF900, 0xFAFF), (0x2F800, 0x2FA1F)),
}
OTHER_BLOCK = "other"  # anything a future Unihan adds outside the ranges above
ALL_BLOCKS: tuple[str, ...] = (*BLOCKS, OTHER_BLOCK)
# Compatibility ideographs are (near-)duplicates of unified ones; they are off by default.
DEFAULT_BLOCKS: tuple[str, ...] = tuple(b for b in ALL_BLOCKS if b != "compat")

_BLOCK_ALIASES = {
    "a": "ext-a",
    "b": "ext-b",
    "c": "ext-c",
    "d": "ext-d",
    "e": "ext-e",
    "f": "ext-f",
    "g": "ext-g",
    "h": "ext-h",
    "i": "ext-i",
    "j": "ext-j",
    "compatibility": "compat",
    "unified": "uro",
}


class UnihanError(ValueError):
    """The Unihan source is missing, unreadable or not in Unihan's format."""


def block_of(codepoint: int) -> str:
    """Name of the CJK block holding ``codepoint`` (``"other"`` when none of :data:`BLOCKS` does)."""
    for name, ranges in BLOCKS.items():
        for lo, hi in ranges:
            if lo <= codepoint <= hi:
                return name
    return OTHER_BLOCK


def parse_blocks(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise a block selection such as ``"uro,ext-a"``, ``["uro", "b"]`` or ``"all"``.

    ``None``/``"default"`` gives :data:`DEFAULT_BLOCKS`; ``"all"`` adds the compatibility ideographs.
    """
    if spec is None:
        return DEFAULT_BLOCKS
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower().replace("_", "-")
        if not name:
            continue
        if name == "all":
            out.extend(ALL_BLOCKS)
            continue
        if name == "default":
            out.extend(DEFAULT_BLOCKS)
            continue
        if name.startswith("ext") and not name.startswith("ext-"):
            name = "ext-" + name[3:]
        name = _BLOCK_ALIASES.get(name, name)
        if name not in ALL_BLOCKS:
            raise ValueError(
                f"Unknown CJK block {raw!r}; choose from {', '.join(ALL_BLOCKS)}, 'default' or 'all'."
            )
        out.append(name)
    if not out:
        raise ValueError("No CJK block selected; pass e.g. 'uro,ext-a' or 'all'.")
    return tuple(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


@dataclass
class UnihanData:
    """The Unihan fields the glyph dataset needs, keyed by code point."""

    definitions: dict[int, str] = field(default_factory=dict)  # raw kDefinition
    rs_unicode: dict[int, str] = field(default_factory=dict)  # raw kRSUnicode
    sources: list[str] = field(default_factory=list)
    version: str | None = None

    def __len__(self) -> int:
        return len(self.definitions)


def find_default_unihan() -> Path:
    """Locate the Unihan files installed by Debian's ``unicode-data`` package (or a similar layout)."""
    for d in DEFAULT_UNIHAN_DIRS:
        p = Path(d)
        if p.is_dir() and _unihan_files_in_dir(p):
            return p
    raise FileNotFoundError(
        "Unihan database not found (looked in " + ", ".join(DEFAULT_UNIHAN_DIRS) + "). Install it with "
        "`apt-get install unicode-data`, or download https://www.unicode.org/Public/UCD/latest/ucd/Unihan.zip "
        "and pass `--unihan PATH` (a directory, Unihan.zip, or Unihan_Readings.txt[.bz2])."
    )


def _stem(name: str) -> str:
    base = Path(name).name
    for suffix in (".bz2", ".gz", ".txt"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def _unihan_files_in_dir(directory: Path) -> list[Path]:
    zips = sorted(directory.glob("Unihan*.zip"))
    files = [
        p
        for p in sorted(directory.iterdir())
        if p.is_file() and _stem(p.name) in _UNIHAN_STEMS and p.name.endswith((".txt", ".txt.bz2", ".txt.gz"))
    ]
    # Prefer plain text over compressed copies of the same file.
    by_stem: dict[str, Path] = {}
    for p in files:
        if _stem(p.name) not in by_stem or p.name.endswith(".txt"):
            by_stem[_stem(p.name)] = p
    # Since Unicode 13 kRSUnicode is in IRGSources; RadicalStrokeCounts is then only read as a fallback.
    if "Unihan_IRGSources" in by_stem:
        by_stem.pop("Unihan_RadicalStrokeCounts", None)
    return [by_stem[s] for s in _UNIHAN_STEMS if s in by_stem] or zips[:1]


def _read_bytes(path: Path) -> bytes:
    if path.name.endswith(".bz2"):
        return bz2.decompress(path.read_bytes())
    if path.name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    return path.read_bytes()


_VERSION_RE = re.compile(r"^#\s*Unicode version:\s*(\S+)", re.MULTILINE)
# Every line of a Unihan file is a comment, blank, or `U+XXXX<TAB>kField<TAB>value`. (Patterns start at
# "\n" rather than a MULTILINE "^", which Python's re would try at every character.)
_BAD_LINE_RE = re.compile(r"\n(?!#|[ \t\r]*(?:\n|$)|U\+[0-9A-Fa-f]{4,6}\tk\w+\t)([^\n]*)")
# Values never contain tabs, so "U+XXXX<TAB>kField<TAB>" can only occur at the start of a line.
_FIELDS_RE = re.compile(r"U\+([0-9A-Fa-f]{4,6})\t(kDefinition|kRSUnicode)\t([^\r\n]*)")


def _parse_text(text: str, origin: str, data: UnihanData) -> None:
    """Collect kDefinition/kRSUnicode from Unihan's ``U+XXXX<TAB>kField<TAB>value`` lines.

    The whole file is checked first, so a wrong file fails loudly instead of yielding a partial dataset.
    Regexes over the whole text keep this fast (the IRG sources file has ~430k lines).
    """
    text = "\n" + text
    bad = _BAD_LINE_RE.search(text)
    if bad:
        lineno = text.count("\n", 0, bad.start() + 1)
        raise UnihanError(
            f"{origin}:{lineno}: not a Unihan line (expected 'U+XXXX<TAB>kField<TAB>value'): "
            f"{bad.group(1)[:80]!r}. Pass a Unihan file from Unicode's Unihan.zip or Debian's unicode-data package."
        )
    if data.version is None and (m := _VERSION_RE.search(text, 0, 2000)):
        data.version = m.group(1)
    targets = {"kDefinition": data.definitions, "kRSUnicode": data.rs_unicode}
    for cp, key, value in _FIELDS_RE.findall(text):
        targets[key][int(cp, 16)] = value


def _decode(raw: bytes, origin: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnihanError(f"{origin} is not UTF-8 text ({e}); is it a Unihan file?") from e


def _read_file(path: Path, data: UnihanData) -> None:
    try:
        raw = _read_bytes(path)
    except (OSError, EOFError, ValueError) as e:
        raise UnihanError(
            f"Cannot read Unihan file {path}: {e}. Is it a (bz2/gz-compressed) Unihan text file?"
        ) from e
    _parse_text(_decode(raw, str(path)), str(path), data)
    data.sources.append(str(path))


def _read_zip(path: Path, data: UnihanData) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n for n in zf.namelist() if _stem(n) in _UNIHAN_STEMS and n.endswith(".txt")]
            if not members:
                raise UnihanError(f"{path} holds no Unihan_*.txt files; is it Unicode's Unihan.zip?")
            for name in members:
                origin = f"{path}!{name}"
                _parse_text(_decode(zf.read(name), origin), origin, data)
                data.sources.append(origin)
    except (OSError, zipfile.BadZipFile) as e:
        raise UnihanError(f"Cannot read Unihan zip {path}: {e}.") from e


def load_unihan(source: str | Path | None = None) -> UnihanData:
    """Read ``kDefinition`` and ``kRSUnicode`` from ``source`` (default: Debian's ``unicode-data`` files).

    ``source`` may be a directory (``Unihan_*.txt`` or ``.txt.bz2`` files, or ``Unihan.zip``), Unicode's
    ``Unihan.zip``, or one ``.txt``/``.bz2`` file. A lone ``Unihan_Readings`` file picks up ``kRSUnicode``
    from a sibling ``Unihan_IRGSources`` file when there is one.
    """
    path = Path(source) if source is not None else find_default_unihan()
    if not path.exists():
        raise FileNotFoundError(
            f"Unihan source {path} does not exist. Pass a directory, Unihan.zip or Unihan_Readings.txt[.bz2] "
            "with --unihan, or `apt-get install unicode-data` and omit --unihan."
        )
    data = UnihanData()
    if path.is_dir():
        files = _unihan_files_in_dir(path)
        if not files:
            raise UnihanError(
                f"No Unihan files in {path} (expected Unihan_Readings.txt[.bz2] and Unihan_IRGSources.txt[.bz2], "
                "or Unihan.zip)."
            )
        for f in files:
            (_read_zip if f.suffix == ".zip" else _read_file)(f, data)
    elif path.suffix == ".zip":
        _read_zip(path, data)
    else:
        _read_file(path, data)
        if not data.rs_unicode:
            for stem in ("Unihan_IRGSources", "Unihan_RadicalStrokeCounts"):
                sibling = path.with_name(stem + path.name[len(_stem(path.name)) :])
                if sibling.exists() and sibling != path:
                    _read_file(sibling, data)
                    break
    if not data.definitions:
        raise UnihanError(
            f"No kDefinition entries in {', '.join(data.sources) or path}. kDefinition lives in "
            "Unihan_Readings.txt; pass that file, its directory, or Unihan.zip."
        )
    if not data.rs_unicode:
        logger.warning("No kRSUnicode entries in %s; radical/strokes will be empty.", ", ".join(data.sources))
    return data


# --------------------------------------------------------------------------------------------------
# Radical / stroke count
# --------------------------------------------------------------------------------------------------

_RS_RE = re.compile(r"^(\d{1,3})('*)\.(-?\d{1,2})$")


def parse_rs_unicode(value: str | None) -> tuple[int | None, int | None]:
    """(Kangxi radical 1..214, residual strokes) from the first ``kRSUnicode`` value.

    Apostrophes mark simplified forms of a radical (``"167'.5"`` is 钅, radical 167 with 5 strokes); they
    map to the same Kangxi number.
    """
    if not value:
        return None, None
    m = _RS_RE.match(value.split()[0])
    if not m:
        return None, None
    radical = int(m.group(1))
    if not 1 <= radical <= 214:
        return None, None
    return radical, int(m.group(3))


# --------------------------------------------------------------------------------------------------
# Cleaning definitions
# --------------------------------------------------------------------------------------------------

# Ideographs and CJK radicals/symbols that may appear inside definitions (never in an English caption).
_CJK_CLASS = (
    "\u2e80-\u2fdf\u3005-\u3007\u3021-\u3029\u3038-\u303b\u31c0-\u31ef\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0003ffff"
)
_REF_RE = re.compile(rf"U\+[0-9A-Fa-f]{{4,6}}|[{_CJK_CLASS}]+")
_CODE_RE = re.compile(r"U\+([0-9A-Fa-f]{4,6})")
_CJK_RUN_RE = re.compile(rf"[{_CJK_CLASS}]+")
# A clause whose text before the first reference only says *which* character it is a form of
# ("same as", "(J) non-standard variant of", "an ancient form of", "used for", "(Cant.)"), so what
# follows the reference is the meaning.
_REFERENTIAL_PREFIX_RE = re.compile(
    r"^(?P<tag>(?:\((?:cant\.|j)\)\s*)*)"
    r"(?:(?:a|an|the)\s+)?(?:[\w-]+\s+){0,3}?"
    r"(?:same\s+as|forms?\s+(?:of|for)|variants?\s+(?:of|for)|used\s+(?:\([^()]*\)\s+)?for|simplification\s+of"
    r"|equivalent\s+(?:of|to)|ideograph\s+for|interchangeable(?:\s+with)?|abbreviation\s+(?:of|for)"
    r"|abbreviated\s+form(?:\s+of)?)?\s*$",
    re.IGNORECASE,
)
_SPACE_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,;:.!?)])")
_SPACE_AFTER_OPEN_RE = re.compile(r"\(\s+")
_EMPTY_PARENS_RE = re.compile(r"\(\s*\)")
_DUP_SEP_RE = re.compile(r"([,;])(\s*[,;])+")


def _has_ref(text: str) -> bool:
    return _REF_RE.search(text) is not None


def _split_top_level(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(clause, separator)`` pairs, splitting on ``,``/``;`` outside parentheses."""
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch in ",;" and depth == 0:
            yield text[start:i], ch
            start = i + 1
    yield text[start:], ""


def _drop_referencing_parentheses(text: str) -> str:
    """Remove every top-level ``( ... )`` group that mentions an ideograph or a ``U+`` code.

    Groups that only carry English ("(Cant.)", "sudden(ly)", "(element 36, Kr)") are kept; a removed group
    between two pieces of text becomes a ``;`` break. An unbalanced ``(`` runs to the end of the text.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "(":
            out.append(ch)
            i += 1
            continue
        depth = 0
        j = i
        while j < n:
            if text[j] == "(":
                depth += 1
            elif text[j] == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        group = text[i : j + 1]
        if not _has_ref(group):
            out.append(group)
        elif "".join(out).strip() and text[j + 1 :].strip():
            # Mid-text, such a group starts a new sense ("frustrate (same as 憛) worried"): keep a break.
            out.append(";")
        i = j + 1
    return "".join(out)


def _clean_clause(clause: str) -> str:
    """Strip character references from one clause, keeping its English meaning (or nothing)."""
    refs = list(_REF_RE.finditer(clause))
    if not refs:
        return clause
    prefix = clause[: refs[0].start()].strip()
    m = _REFERENTIAL_PREFIX_RE.match(prefix)
    if not m:
        # The references are part of the sentence ("the 5th of the eight diagrams 離"); removing them
        # would leave it dangling, so the clause goes.
        return ""
    tail = clause[refs[-1].end() :]
    between = _REF_RE.sub("", clause[refs[0].start() : refs[-1].end()])
    if re.search(r"[A-Za-z]{3,}", between) and not re.fullmatch(r"[\s,;/]*(or|and)?[\s,;/]*", between):
        return ""  # prose interleaved with references: nothing clean to keep
    tail = tail.strip(" .")
    if not re.search(r"[A-Za-z]", tail):
        return ""
    tag = m.group("tag").strip()
    if tag.lower() == "(j)":
        tag = ""  # a source tag ("Japanese variant"), not part of the meaning
    return f"{tag} {tail}".strip()


def fold_diacritics(text: str) -> str:
    """ASCII-fold Latin letters (``"Hénán" -> "Henan"``, ``"ā" -> "a"``) and compatibility forms."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def clean_definition(raw: str) -> str:
    """Turn a raw ``kDefinition`` into an English caption.

    Only what refers to other characters is removed: parentheses mentioning an ideograph or a ``U+``
    code, and clauses that merely name a variant ("non-standard form of U+559C 喜, to like" -> "to like").
    Everything else is kept ("sudden(ly)", "(Cant.) to saw"). Diacritics are folded to ASCII (ā -> a).
    Returns ``""`` when nothing English remains (e.g. "(same as U+4E18 丘)").
    """
    text = _drop_referencing_parentheses(raw)
    kept: list[tuple[str, str]] = []
    for clause, sep in _split_top_level(text):
        cleaned = _clean_clause(clause).strip()
        if cleaned:
            kept.append((cleaned, sep))
    text = " ".join(c + (s if k < len(kept) - 1 else "") for k, (c, s) in enumerate(kept))
    text = fold_diacritics(text)
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    text = text.replace("\u2014", " - ").replace("\u2013", "-")
    text = _EMPTY_PARENS_RE.sub("", text)
    text = _SPACE_AFTER_OPEN_RE.sub("(", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    text = _DUP_SEP_RE.sub(r"\1", text)
    text = _SPACE_RE.sub(" ", text)
    return text.strip(" ,;:")


def referenced_codepoints(raw: str) -> list[int]:
    """Characters a definition points at: ``U+XXXX`` codes first, then lone ideographs, in order.

    Runs of several ideographs are words ("another name for 知母"), not pointers to a character, so
    they are skipped: borrowing 知's meaning for them would be wrong.
    """
    cps = [int(h, 16) for h in _CODE_RE.findall(raw)]
    cps += [ord(run) for run in _CJK_RUN_RE.findall(_CODE_RE.sub(" ", raw)) if len(run) == 1]
    return list(dict.fromkeys(cps))


class DefinitionCleaner:
    """Cleans definitions on demand (memoised); optionally resolves pointer-only ones.

    A definition that is *only* a pointer ("(same as U+4E18 丘)", "variant of 鬣 U+9B23") cleans to
    ``""``; with ``resolve_same_as`` it borrows the cleaned definition of the first character it names,
    following up to ``max_hops`` pointers. On demand, because ``--limit`` builds need only a few.
    """

    def __init__(self, definitions: dict[int, str], resolve_same_as: bool = True, max_hops: int = 3):
        self.definitions = definitions
        self.resolve_same_as = resolve_same_as
        self.max_hops = max_hops
        self._cache: dict[int, str] = {}

    def _clean(self, cp: int) -> str:
        if cp not in self._cache:
            self._cache[cp] = clean_definition(self.definitions.get(cp, ""))
        return self._cache[cp]

    def __call__(self, cp: int) -> tuple[str, bool]:
        """``(caption, resolved)``: the cleaned definition of ``cp`` and whether it was borrowed."""
        text = self._clean(cp)
        if text or not self.resolve_same_as:
            return text, False
        current, seen = cp, {cp}
        for _ in range(self.max_hops):
            targets = [t for t in referenced_codepoints(self.definitions.get(current, "")) if t not in seen]
            if not targets:
                break
            current = targets[0]
            seen.add(current)
            if self._clean(current):
                return self._clean(current), True
        return "", False


def clean_definitions(
    definitions: dict[int, str], resolve_same_as: bool = True, max_hops: int = 3
) -> tuple[dict[int, str], set[int]]:
    """Clean every definition (see :class:`DefinitionCleaner`).

    Returns the cleaned map and the set of code points whose caption was borrowed from a target.
    """
    cleaner = DefinitionCleaner(definitions, resolve_same_as, max_hops)
    out: dict[int, str] = {}
    resolved: set[int] = set()
    for cp in definitions:
        out[cp], borrowed = cleaner(cp)
        if borrowed:
            resolved.add(cp)
    return out, resolved
