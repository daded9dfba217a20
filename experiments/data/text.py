"""Offline text corpora for the language-model experiments, read byte by byte.

Three corpora, all from Debian packages (``scripts/_env.sh`` installs them):

* the World English Bible (``sword-text-web``) and the King James Bible
  (``sword-text-kjv``): SWORD zText modules under
  ``/usr/share/sword/modules/texts/ztext/``. :func:`read_bible` reads them
  directly (index files ``.bzs``/``.bzv``, zlib blocks ``.bzz`` of OSIS XML;
  the versification tables come from ``pysword``) and :func:`clean_osis` turns
  each verse's OSIS into plain text. :func:`aligned_bibles` keeps the verses that
  both translations have, so the two corpora hold the same content in two styles.
* the Python 3.11 documentation sources (``python3.11-doc``):
  ``/usr/share/doc/python3.11/html/_sources/**/*.rst.txt``.

Splits never cut a document: the Bible is split by whole books, the same books
for both translations (:data:`BIBLE_TEST_BOOKS`, :data:`BIBLE_VALIDATION_BOOKS`),
so no test verse was seen in either; the Python docs by file (a hash of the
path). :func:`corpus_bytes` gives any corpus's split as a ``uint8`` array; the
names are :data:`CORPORA` (``web_old``/``web_new`` are the maintenance halves of
the WEB, :func:`maintenance_books`).

Models see bytes (vocabulary 256, no tokenizer). :class:`WindowSampler` draws
training windows of ``context + 1`` bytes from a seed and a step (random access,
so a resumed run draws the same batches); :func:`eval_windows` gives the fixed
held-out windows; :func:`bits_per_byte` is the metric. Everything is
deterministic; a missing corpus raises :class:`CorpusUnavailableError` naming
the Debian package to install.
"""

from __future__ import annotations

import functools
import hashlib
import html
import math
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Where Debian's ``sword-text-*`` packages put the SWORD library (``mods.d``, ``modules``).
SWORD_DIR = Path("/usr/share/sword")
#: Where Debian's ``python3.11-doc`` puts the reStructuredText sources of the docs.
PYDOCS_DIR = Path("/usr/share/doc/python3.11/html/_sources")

#: Translation -> (SWORD module name, Debian package).
BIBLES: dict[str, tuple[str, str]] = {
    "web": ("engWEB2015eb", "sword-text-web"),
    "kjv": ("engKJV2006eb", "sword-text-kjv"),
}
PYDOCS_PACKAGE = "python3.11-doc"

SPLITS = ("train", "validation", "test")
#: Every corpus :func:`corpus_bytes` serves.
CORPORA = ("web", "kjv", "web_old", "web_new", "pydocs")

#: Held-out books (OSIS names), the same for both translations: ~10% of the text each way,
#: one or two of each kind of book (law, history, wisdom, prophets, gospels, letters).
BIBLE_TEST_BOOKS = ("2Kgs", "Prov", "Hos", "Luke", "1Cor", "Heb")
BIBLE_VALIDATION_BOOKS = ("Judg", "Esth", "Eccl", "Amos", "Gal", "1Pet")
#: The maintenance task's halves end/start here: books before it (in canonical
#: order) are the old half, it and the books after it the new half.
MAINTENANCE_FIRST_NEW_BOOK = "Ps"


#: One verse: (chapter, verse, text).
Verse = tuple[int, int, str]


class CorpusUnavailableError(FileNotFoundError):
    """A corpus's files are not installed; the message names the Debian package."""


def _missing(what: str, path: Path, package: str) -> CorpusUnavailableError:
    return CorpusUnavailableError(
        f"{what} not found at {path}: install it with `sudo apt-get install {package}` "
        "(scripts/test.sh does so when run as root)"
    )


# ---------------------------------------------------------------------------------------
# SWORD zText reader


def _read_conf(conf: Path) -> dict[str, str]:
    """The ``key=value`` lines of a SWORD module's ``mods.d/*.conf`` (first value wins)."""
    out: dict[str, str] = {}
    for line in conf.read_text(encoding="utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            out.setdefault(key.strip(), value.strip())
    return out


_NOTE = re.compile(r"<note\b[^>]*/>|<note\b.*?</note\s*>", re.DOTALL)
_TITLE = re.compile(r"<title\b([^>]*)/>|<title\b([^>]*)>.*?</title\s*>", re.DOTALL)
_VARIANT = re.compile(r"<rdg\b.*?</rdg\s*>", re.DOTALL)
#: The closing milestone of a book: what follows it in the last verse is back matter
#: (the WEB's glossary sits in Revelation 22:21's entry).
_BOOK_END = re.compile(
    r'<div\b[^>]*\beID="[^"]*"[^>]*\btype="book"|<div\b[^>]*\btype="book"[^>]*\beID="'
)
#: Tags that mark a break between words (lines, paragraphs, headings, milestones).
_BREAK_TAG = re.compile(
    r"</?(?:l|lg|lb|p|div|chapter|title|milestone|list|item|head|verse)\b[^>]*>"
)
_ANY_TAG = re.compile(r"<[^>]*>")
_SPACE_BEFORE_CLOSER = re.compile(r"\s+([,.;:!?)\]’”])")


def _drop_noncanonical_title(match: re.Match[str]) -> str:
    attributes = match.group(1) or match.group(2) or ""
    return match.group(0) if 'canonical="true"' in attributes else " "


def clean_osis(raw: str) -> str:
    """Plain text of one verse's OSIS markup.

    Back matter after a book's closing milestone is cut. Notes (footnotes,
    cross references), non-canonical headings and variant readings are removed
    with their content *first*, each replaced by a space: a note often sits
    between two words with no space around it
    (``God</w><note>...</note><w>created``), so stripping tags first would keep
    the note's text, and removing it without a space would merge the words.
    Canonical titles (the Psalms' superscriptions) keep their text. Line,
    paragraph and heading tags become spaces; inline tags (``w``, ``q``,
    ``transChange``, ``divineName``, ...) vanish. Whitespace is collapsed, the
    spaces this leaves before closing punctuation are dropped and XML entities
    are decoded.
    """
    text = raw
    if "<" not in text:
        return _SPACE_BEFORE_CLOSER.sub(r"\1", " ".join(html.unescape(text).split()))
    end = _BOOK_END.search(text) if 'type="book"' in text else None
    if end:
        text = text[: end.start()]
    if "<note" in text:
        text = _NOTE.sub(" ", text)
    if "<title" in text:
        text = _TITLE.sub(_drop_noncanonical_title, text)
    if "<rdg" in text:
        text = _VARIANT.sub(" ", text)
    text = _BREAK_TAG.sub(" ", text)
    text = _ANY_TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    text = " ".join(text.split())
    return _SPACE_BEFORE_CLOSER.sub(r"\1", text)


def _versification(name: str) -> dict[str, list[tuple[str, list[int]]]]:
    """Testament -> [(OSIS book name, verses per chapter)] of a SWORD versification."""
    from pysword.canons import canons  # the SWORD versification tables, as data

    key = name.lower()
    if key not in canons:
        raise ValueError(f"unknown SWORD versification {name!r}; known: {sorted(canons)}")
    return {t: [(b[1], list(b[3])) for b in books] for t, books in canons[key].items()}


def _read_testament(module_dir: Path, testament: str, kind: str) -> tuple[bytes, list[bytes]]:
    """The verse index (``.bzv``) and the decompressed blocks (``.bzs`` + ``.bzz``);
    ``kind`` is the blocks' first letter: ``b``ook, ``c``hapter or ``v``erse."""
    bzs = (module_dir / f"{testament}.{kind}zs").read_bytes()
    bzv = (module_dir / f"{testament}.{kind}zv").read_bytes()
    bzz = (module_dir / f"{testament}.{kind}zz").read_bytes()
    if len(bzs) % 12 or len(bzv) % 10:
        raise ValueError(f"{module_dir}/{testament}.{kind}z[sv]: not a SWORD zText index")
    blocks = []
    for offset, size, _ in struct.iter_unpack("<III", bzs):
        blocks.append(zlib.decompress(bzz[offset : offset + size]) if size else b"")
    return bzv, blocks


def read_bible(translation: str, sword_dir: Path | str = SWORD_DIR) -> dict[str, list[Verse]]:
    """Every non-empty verse of a translation: OSIS book name -> [(chapter, verse, text)].

    Books in canonical order (the module's versification: the WEB's NRSVA also
    has the deuterocanonical books, the KJV's does not), text cleaned by
    :func:`clean_osis`. Raises :class:`CorpusUnavailableError` naming the Debian
    package when the module is not installed, ``ValueError`` for an unknown
    translation.
    """
    return _read_bible(translation, str(Path(sword_dir)))


@functools.lru_cache(maxsize=8)  # keyed by the path as a string: Path and str share entries
def _read_bible(translation: str, sword_dir_str: str) -> dict[str, list[Verse]]:
    sword_dir = Path(sword_dir_str)
    if translation not in BIBLES:
        raise ValueError(f"unknown translation {translation!r}; known: {sorted(BIBLES)}")
    module, package = BIBLES[translation]
    confs = [sword_dir / "mods.d" / f"{name}.conf" for name in (module, module.lower())]
    conf_path = next((c for c in confs if c.is_file()), confs[0])
    if not conf_path.is_file():
        raise _missing(f"SWORD module {module} ({translation})", conf_path, package)
    conf = _read_conf(conf_path)
    module_dir = sword_dir / conf.get("DataPath", f"modules/texts/ztext/{module.lower()}/")
    if not module_dir.is_dir():
        raise _missing(f"SWORD module {module} ({translation})", module_dir, package)
    driver, compress, block = (
        conf.get(k, "").lower() for k in ("ModDrv", "CompressType", "BlockType")
    )
    source = conf.get("SourceType", "OSIS").upper()
    if driver != "ztext" or compress != "zip" or source != "OSIS" or block[:1] not in "bcv":
        raise ValueError(
            f"{conf_path}: only zlib-compressed OSIS zText modules are supported (ModDrv="
            f"{driver}, CompressType={compress}, SourceType={source}, BlockType={block})"
        )
    versification = _versification(conf.get("Versification", "KJV"))
    encoding = conf.get("Encoding", "UTF-8")

    out: dict[str, list[Verse]] = {}
    for testament, books in versification.items():
        bzv, blocks = _read_testament(module_dir, testament, (block or "b")[0])
        n_records = len(bzv) // 10
        index = 2  # 0: module heading, 1: testament heading
        for osis, chapters in books:
            verses: list[Verse] = []
            index += 1  # book heading
            for chapter, n_verses in enumerate(chapters, start=1):
                index += 1  # chapter heading
                for verse in range(1, n_verses + 1):
                    if index < n_records:
                        buf, start, length = struct.unpack_from("<IIH", bzv, 10 * index)
                        data = blocks[buf][start : start + length] if buf < len(blocks) else b""
                        text = clean_osis(data.decode(encoding, errors="replace"))
                        if text:
                            verses.append((chapter, verse, text))
                    index += 1
            if verses:
                out[osis] = verses
    return out


def aligned_bibles(
    sword_dir: Path | str = SWORD_DIR,
) -> tuple[dict[str, list[Verse]], dict[str, list[Verse]]]:
    """(WEB, KJV) restricted to the verses both have: the same books, chapters and verses.

    The two modules use different versifications (NRSVA, KJV); verses that one
    of them lacks or leaves empty are dropped (7 in these modules, all KJV-only:
    Luke 17:36, Acts 8:37, 15:34, 24:7, Romans 16:25-27, which the WEB omits or
    places elsewhere), as are the WEB's deuterocanonical books.
    """
    return _aligned_bibles(str(Path(sword_dir)))


@functools.lru_cache(maxsize=2)
def _aligned_bibles(sword_dir: str) -> tuple[dict[str, list[Verse]], dict[str, list[Verse]]]:
    web, kjv = read_bible("web", sword_dir), read_bible("kjv", sword_dir)
    out_web: dict[str, list[Verse]] = {}
    out_kjv: dict[str, list[Verse]] = {}
    for book in kjv:  # canonical (Protestant) order
        if book not in web:
            continue
        kjv_keys = {(c, v) for c, v, _ in kjv[book]}
        web_keys = {(c, v) for c, v, _ in web[book]}
        both = kjv_keys & web_keys
        out_web[book] = [x for x in web[book] if (x[0], x[1]) in both]
        out_kjv[book] = [x for x in kjv[book] if (x[0], x[1]) in both]
    return out_web, out_kjv


def bible_books(sword_dir: Path | str = SWORD_DIR) -> tuple[str, ...]:
    """The books both translations have (the 66 of the Protestant canon), in canonical order."""
    return tuple(aligned_bibles(sword_dir)[0])


def bible_split(split: str, sword_dir: Path | str = SWORD_DIR) -> tuple[str, ...]:
    """The books (OSIS names, canonical order) of a split: ``train``, ``validation`` or ``test``."""
    _check_split(split)
    books = bible_books(sword_dir)
    held_out = {"test": BIBLE_TEST_BOOKS, "validation": BIBLE_VALIDATION_BOOKS}
    missing = [b for b in BIBLE_TEST_BOOKS + BIBLE_VALIDATION_BOOKS if b not in books]
    if missing:
        raise ValueError(f"held-out books {missing} are not in both translations")
    if split in held_out:
        return tuple(b for b in books if b in held_out[split])
    return tuple(b for b in books if b not in BIBLE_TEST_BOOKS + BIBLE_VALIDATION_BOOKS)


def maintenance_books(half: str, split: str, sword_dir: Path | str = SWORD_DIR) -> tuple[str, ...]:
    """The maintenance task's halves of the WEB: ``half`` is ``old`` or ``new``.

    Every split is cut at :data:`MAINTENANCE_FIRST_NEW_BOOK` in canonical order
    (the old half Genesis .. Job, law and history; the new half Psalms .. Revelation:
    about half of the training bytes each), so the model pretrained on the old
    half's training books is evaluated on the old half's held-out books (old
    metric) and continued on the new half's (new metric).
    """
    if half not in ("old", "new"):
        raise ValueError(f"unknown maintenance half {half!r}; expected 'old' or 'new'")
    books = bible_books(sword_dir)
    cut = books.index(MAINTENANCE_FIRST_NEW_BOOK)
    keep = set(books[:cut] if half == "old" else books[cut:])
    return tuple(b for b in bible_split(split, sword_dir) if b in keep)


def bible_text(translation: str, books: Sequence[str], sword_dir: Path | str = SWORD_DIR) -> str:
    """The aligned text of ``books``: one verse per line, books in the order given."""
    web, kjv = aligned_bibles(sword_dir)
    bible = {"web": web, "kjv": kjv}.get(translation)
    if bible is None:
        raise ValueError(f"unknown translation {translation!r}; known: {sorted(BIBLES)}")
    unknown = [b for b in books if b not in bible]
    if unknown:
        raise ValueError(f"unknown books {unknown}; known: {list(bible)}")
    return "".join(text + "\n" for book in books for _, _, text in bible[book])


# ---------------------------------------------------------------------------------------
# Python documentation sources


def pydocs_files(root: Path | str = PYDOCS_DIR) -> tuple[str, ...]:
    """Relative paths of every ``*.rst.txt`` under ``root``, sorted."""
    root = Path(root)
    files = tuple(sorted(p.relative_to(root).as_posix() for p in root.rglob("*.rst.txt")))
    if not files:
        raise _missing("the Python 3.11 documentation sources (*.rst.txt)", root, PYDOCS_PACKAGE)
    return files


def pydocs_file_split(path: str) -> str:
    """The split of one docs file, from a hash of its relative path (stable as files come and go):
    10% test, 5% validation, the rest train."""
    bucket = int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "little") % 100
    return "test" if bucket < 10 else "validation" if bucket < 15 else "train"


def pydocs_split(split: str, root: Path | str = PYDOCS_DIR) -> tuple[str, ...]:
    """The docs files (relative paths, sorted) of ``train``, ``validation`` or ``test``."""
    _check_split(split)
    return tuple(f for f in pydocs_files(root) if pydocs_file_split(f) == split)


def pydocs_text(split: str, root: Path | str = PYDOCS_DIR) -> str:
    """The files of a split, concatenated in path order, each ending in a newline."""
    root = Path(root)
    parts = []
    for rel in pydocs_split(split, root):
        text = (root / rel).read_text(encoding="utf-8", errors="replace")
        parts.append(text if text.endswith("\n") else text + "\n")
    return "".join(parts)


# ---------------------------------------------------------------------------------------
# Bytes, windows, metric


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` as a ``uint8`` array (vocabulary 256)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(data: np.ndarray | Sequence[int]) -> str:
    """Inverse of :func:`encode` (invalid UTF-8, e.g. a window cut mid-character, is replaced)."""
    return bytes(np.asarray(data, dtype=np.uint8)).decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=16)
def _corpus_bytes(corpus: str, split: str, sword_dir: str, pydocs_dir: str) -> np.ndarray:
    if corpus == "pydocs":
        text = pydocs_text(split, pydocs_dir)
    elif corpus in ("web", "kjv"):
        text = bible_text(corpus, bible_split(split, sword_dir), sword_dir)
    else:  # web_old / web_new
        text = bible_text("web", maintenance_books(corpus[4:], split, sword_dir), sword_dir)
    data = encode(text)
    data.flags.writeable = False  # cached and shared: read-only
    return data


def corpus_bytes(
    corpus: str,
    split: str,
    *,
    sword_dir: Path | str = SWORD_DIR,
    pydocs_dir: Path | str = PYDOCS_DIR,
) -> np.ndarray:
    """A corpus's split as a read-only ``uint8`` array.

    ``corpus`` is one of :data:`CORPORA`: ``web``/``kjv`` (aligned Bibles, split
    by :func:`bible_split`), ``web_old``/``web_new`` (the maintenance halves,
    :func:`maintenance_books`), ``pydocs`` (:func:`pydocs_split`).
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {CORPORA}")
    _check_split(split)
    return _corpus_bytes(corpus, split, str(sword_dir), str(pydocs_dir))


class WindowSampler:
    """Training windows of ``context + 1`` bytes at uniformly random offsets.

    ``sampler(step)`` is a ``[batch_size, context + 1]`` ``uint8`` array drawn
    from ``numpy.random.default_rng((seed, step))``: the same seed and step give
    the same batch whatever came before (a resumed run sees the same data).
    Inputs are ``w[:, :-1]``, targets ``w[:, 1:]`` (:func:`inputs_targets`).
    """

    def __init__(self, data: np.ndarray, context: int, batch_size: int, seed: int):
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.ndim != 1:
            raise ValueError(f"data must be a 1-D uint8 array, got {data.dtype} {data.shape}")
        if context < 1 or batch_size < 1:
            raise ValueError(f"context and batch_size must be >= 1, got {context}, {batch_size}")
        if data.size < context + 1:
            raise ValueError(f"{data.size} bytes are fewer than one window of {context + 1}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.data, self.context, self.batch_size, self.seed = data, context, batch_size, seed

    def __call__(self, step: int) -> np.ndarray:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        rng = np.random.default_rng((self.seed, step))
        starts = rng.integers(0, self.data.size - self.context, size=self.batch_size)
        return self.data[starts[:, None] + np.arange(self.context + 1)]


def eval_windows(data: np.ndarray, context: int, max_windows: int) -> np.ndarray:
    """Fixed evaluation windows ``[n, context + 1]``: evenly spaced over ``data``.

    ``n = min(max_windows, len(data) // (context + 1))``, so the windows never
    overlap; they start at ``round(i * (len(data) - context - 1) / (n - 1))``
    (one window at 0 when ``n == 1``). No randomness: the same data give the
    same windows.
    """
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(f"data must be a 1-D uint8 array, got {data.dtype} {data.shape}")
    if context < 1 or max_windows < 1:
        raise ValueError(f"context and max_windows must be >= 1, got {context}, {max_windows}")
    n = min(max_windows, data.size // (context + 1))
    if n == 0:
        raise ValueError(f"{data.size} bytes are fewer than one window of {context + 1}")
    last = data.size - context - 1
    starts = (
        np.round(np.arange(n) * (last / max(n - 1, 1))).astype(np.int64)
        if n > 1
        else np.zeros(1, np.int64)
    )
    return data[starts[:, None] + np.arange(context + 1)]


def inputs_targets(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(windows[:, :-1], windows[:, 1:])`` as int32: the inputs and the next bytes."""
    w = np.asarray(windows).astype(np.int32)
    return w[:, :-1], w[:, 1:]


def nats_to_bits(nats):
    """A cross-entropy per byte in nats (e.g. a mean training loss) -> bits per byte."""
    return nats / math.log(2.0)


def bits_per_byte(logits, targets):
    """Mean cross-entropy of next-byte ``logits`` ``[..., 256]`` against ``targets``, in bits.

    Computed in float32 whatever the logits' dtype. Works on NumPy and JAX
    arrays (and under ``jit``); returns a scalar array.
    """
    import jax
    import jax.numpy as jnp

    logits = jnp.asarray(logits, jnp.float32)
    targets = jnp.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {logits.shape} do not match targets {targets.shape}")
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return nats_to_bits(jnp.mean(nll))


def corpus_summary() -> dict[str, dict[str, int]]:
    """Bytes per corpus and split (for notes and the sizing estimate)."""
    return {c: {s: int(corpus_bytes(c, s).size) for s in SPLITS} for c in CORPORA}
