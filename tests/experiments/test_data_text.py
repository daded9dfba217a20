"""The language-model corpora (experiments.data.text): reader, splits, windows, metric, errors.

The tests that read the real corpora skip, with the package to install, when
Debian's sword-text-web / sword-text-kjv / python3.11-doc are absent.
"""

import math
import re
import struct
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.data import text as T
from tests.experiments._corpora import needs_bibles, needs_pydocs


def verse(translation, book, chapter, number):
    (text,) = [t for c, v, t in T.read_bible(translation)[book] if (c, v) == (chapter, number)]
    return text


# ---------------------------------------------------------------------------------------
# Reader


def test_clean_osis_removes_notes_before_tags_without_merging_words():
    raw = (
        '<w lemma="strong:H0430">God</w><note placement="foot"><reference type="annotateRef">'
        "1:1 </reference>The Hebrew word rendered “God” is Elohim.</note>"
        '<w lemma="strong:H1254">created</w> <title type="x-heading">A heading</title>'
        '<l level="1" sID="x"/>the <divineName>LORD</divineName>'
        '<note type="crossReference"><reference>Isaiah 57:15</reference></note>, '
        "<transChange>is</transChange>&amp; good.<lb/>Amen."
    )
    assert T.clean_osis(raw) == "God created the LORD, is& good. Amen."
    assert T.clean_osis('<title canonical="true" type="psalm">A Psalm.</title> <l/>Yahweh') == (
        "A Psalm. Yahweh"
    )
    # back matter after a book's closing milestone is cut
    assert T.clean_osis(
        'Amen. <div canonical="true" eID="g1" osisID="Rev" type="book"/> Glossary'
    ) == ("Amen.")


@needs_bibles
def test_known_verses_in_both_translations():
    assert verse("web", "John", 11, 35) == "Jesus wept."
    assert verse("kjv", "John", 11, 35) == "Jesus wept."
    # WEB's Genesis 1:1 has a footnote between "God" and "created"
    assert verse("web", "Gen", 1, 1) == "In the beginning, God created the heavens and the earth."
    assert verse("kjv", "Gen", 1, 1) == "In the beginning God created the heaven and the earth."
    assert verse("kjv", "Ps", 23, 1) == (
        "A Psalm of David. The LORD is my shepherd; I shall not want."
    )
    # the WEB's glossary sits in the last verse's entry: cut
    assert verse("web", "Rev", 22, 21) == (
        "The grace of the Lord Jesus Christ be with all the saints. Amen."
    )


@needs_bibles
def test_text_has_no_markup_and_no_merged_words():
    for translation in ("web", "kjv"):
        text = T.bible_text(translation, T.bible_books())
        assert not re.search(r"[<>]|&[a-z]+;|&#", text)
        assert not re.search(r"[a-z][A-Z]", text)  # "wordWord": a tag removed without a space
        assert not re.search(r"[a-z][.,;:!?][A-Za-z]", text)  # "word,word"
        assert "  " not in text and " \n" not in text


@needs_bibles
def test_aligned_bibles_hold_the_same_verses():
    web, kjv = T.aligned_bibles()
    assert list(web) == list(kjv) and len(web) == 66
    for book in web:
        assert [x[:2] for x in web[book]] == [x[:2] for x in kjv[book]]
    assert sum(len(v) for v in web.values()) > 31_000
    assert "Tob" in T.read_bible("web") and "Tob" not in web  # deuterocanon dropped


# ---------------------------------------------------------------------------------------
# Splits


@needs_bibles
def test_bible_splits_are_disjoint_whole_books_and_cover_the_bible():
    splits = {s: T.bible_split(s) for s in T.SPLITS}
    sets = {s: set(b) for s, b in splits.items()}
    assert not sets["train"] & sets["validation"]
    assert not sets["train"] & sets["test"]
    assert not sets["validation"] & sets["test"]
    assert set().union(*sets.values()) == set(T.bible_books())
    assert splits["test"] == T.BIBLE_TEST_BOOKS
    assert splits["validation"] == T.BIBLE_VALIDATION_BOOKS
    # the same books, hence the same verses, in both translations
    for split, books in splits.items():
        web, kjv = T.corpus_bytes("web", split), T.corpus_bytes("kjv", split)
        assert T.decode(web).count("\n") == T.decode(kjv).count("\n")
        assert len(T.decode(web).splitlines()) == sum(len(T.aligned_bibles()[0][b]) for b in books)
    sizes = {s: T.corpus_bytes("web", s).size for s in T.SPLITS}
    total = sum(sizes.values())
    assert 0.04 < sizes["validation"] / total < 0.08 and 0.08 < sizes["test"] / total < 0.15


@needs_bibles
def test_maintenance_halves_are_disjoint_and_partition_each_split():
    for split in T.SPLITS:
        old, new = T.maintenance_books("old", split), T.maintenance_books("new", split)
        assert old and new and not set(old) & set(new)
        assert set(old) | set(new) == set(T.bible_split(split))
    train = [T.corpus_bytes(f"web_{h}", "train").size for h in ("old", "new")]
    assert 0.8 < train[0] / train[1] < 1.25  # about half each
    assert T.maintenance_books("old", "train")[-1] == "Job"
    assert T.maintenance_books("new", "train")[0] == "Ps"


@needs_bibles
def test_corpus_bytes_are_deterministic_and_read_only():
    a = T.corpus_bytes("kjv", "validation")
    assert a.dtype == np.uint8 and not a.flags.writeable
    T._corpus_bytes.cache_clear()
    b = T.corpus_bytes("kjv", "validation")
    assert a is not b and np.array_equal(a, b)


@needs_pydocs
def test_python_docs_split_by_file():
    files = T.pydocs_files()
    assert len(files) > 400 and all(f.endswith(".rst.txt") for f in files)
    splits = {s: set(T.pydocs_split(s)) for s in T.SPLITS}
    assert not splits["train"] & splits["validation"]
    assert not splits["train"] & splits["test"]
    assert not splits["validation"] & splits["test"]
    assert set().union(*splits.values()) == set(files)
    assert 0.05 < len(splits["test"]) / len(files) < 0.15
    assert T.pydocs_split("test") == T.pydocs_split("test")  # deterministic
    test_text = T.decode(T.corpus_bytes("pydocs", "test"))
    first = sorted(splits["test"])[0]
    assert test_text.startswith((T.PYDOCS_DIR / first).read_text(encoding="utf-8")[:200])


def test_python_docs_split_on_a_fake_tree(tmp_path):
    for i in range(200):
        (tmp_path / "lib").mkdir(exist_ok=True)
        (tmp_path / "lib" / f"m{i}.rst.txt").write_text(f"module {i}\n")
    (tmp_path / "lib" / "ignored.txt").write_text("x")
    files = T.pydocs_files(tmp_path)
    assert len(files) == 200
    splits = [set(T.pydocs_split(s, tmp_path)) for s in T.SPLITS]
    assert sum(map(len, splits)) == 200 and not (splits[0] & splits[1] | splits[0] & splits[2])
    text = T.pydocs_text("test", tmp_path)
    assert text.count("\n") == len(splits[2])


# ---------------------------------------------------------------------------------------
# Bad input


def test_missing_corpora_name_the_package(tmp_path):
    with pytest.raises(T.CorpusUnavailableError, match="apt-get install sword-text-web"):
        T.read_bible("web", tmp_path)
    with pytest.raises(T.CorpusUnavailableError, match="apt-get install sword-text-kjv"):
        T.read_bible("kjv", tmp_path)
    with pytest.raises(T.CorpusUnavailableError, match=r"apt-get install python3\.11-doc"):
        T.pydocs_files(tmp_path / "nowhere")
    with pytest.raises(T.CorpusUnavailableError, match="apt-get install sword-text-"):
        T.corpus_bytes("kjv", "train", sword_dir=tmp_path)
    with pytest.raises(T.CorpusUnavailableError, match=r"python3\.11-doc"):
        T.corpus_bytes("pydocs", "test", pydocs_dir=tmp_path)
    # a conf without its module directory
    (tmp_path / "mods.d").mkdir()
    (tmp_path / "mods.d" / "engWEB2015eb.conf").write_text(
        "[engWEB2015eb]\nDataPath=./modules/texts/ztext/engWEB2015eb/\nModDrv=zText\n"
    )
    with pytest.raises(T.CorpusUnavailableError, match="sword-text-web"):
        T.read_bible("web", tmp_path)


def test_unknown_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        T.corpus_bytes("web", "dev")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        T.bible_split("valid")
    with pytest.raises(ValueError, match="unknown split 'eval'"):
        T.pydocs_split("eval", tmp_path)
    with pytest.raises(ValueError, match="unknown corpus 'bible'"):
        T.corpus_bytes("bible", "train")
    with pytest.raises(ValueError, match="unknown translation 'asv'"):
        T.read_bible("asv")
    with pytest.raises(ValueError, match="unknown maintenance half 'first'"):
        T.maintenance_books("first", "train")


def _write_module(root, books_text):
    """A one-block zText module in KJV versification holding Genesis 1:1-2 only."""
    mod = root / "modules" / "texts" / "ztext" / "engkjv2006eb"
    mod.mkdir(parents=True)
    (root / "mods.d").mkdir()
    (root / "mods.d" / "engKJV2006eb.conf").write_text(
        "[engKJV2006eb]\nDataPath=./modules/texts/ztext/engkjv2006eb/\nModDrv=zText\n"
        "SourceType=OSIS\nEncoding=UTF-8\nCompressType=ZIP\nBlockType=BOOK\n"
        "Versification=KJV\n"
    )
    block = "".join(books_text).encode()
    comp = zlib.compress(block)
    (mod / "ot.bzs").write_bytes(struct.pack("<III", 0, len(comp), len(block)))
    (mod / "ot.bzz").write_bytes(comp)
    records, start = [struct.pack("<IIH", 0, 0, 0)] * 4, 0  # headings: module, OT, Gen, Gen 1
    for text in books_text:
        records.append(struct.pack("<IIH", 0, start, len(text.encode())))
        start += len(text.encode())
    (mod / "ot.bzv").write_bytes(b"".join(records))
    for name in ("nt.bzs", "nt.bzv", "nt.bzz"):
        (mod / name).write_bytes(b"")


def test_reader_on_a_synthetic_module(tmp_path):
    _write_module(tmp_path, ["<w>In</w> the <note>n</note>beginning.", "And <q>the</q> earth."])
    kjv = T.read_bible("kjv", tmp_path)
    assert kjv == {"Gen": [(1, 1, "In the beginning."), (1, 2, "And the earth.")]}


# ---------------------------------------------------------------------------------------
# Windows and the metric


def test_window_sampler_is_a_function_of_seed_and_step():
    data = T.encode("In the beginning God created the heaven and the earth.\n" * 20)
    sampler = T.WindowSampler(data, context=16, batch_size=4, seed=3)
    a, b = sampler(7), sampler(7)
    assert a.shape == (4, 17) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(sampler(7), sampler(8))
    assert not np.array_equal(sampler(7), T.WindowSampler(data, 16, 4, seed=4)(7))
    text = T.decode(data)
    for row in a:  # every window is a contiguous slice of the data
        assert T.decode(row) in text
    x, y = T.inputs_targets(a)
    assert x.dtype == np.int32 and np.array_equal(x[:, 1:], y[:, :-1])
    with pytest.raises(ValueError, match="fewer than one window"):
        T.WindowSampler(data[:10], context=16, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        T.WindowSampler(data.astype(np.int32), context=16, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="step must be >= 0"):
        sampler(-1)


def test_eval_windows_are_fixed_non_overlapping_and_span_the_data():
    data = np.arange(1000, dtype=np.int64).astype(np.uint8)
    w = T.eval_windows(data, context=9, max_windows=50)
    assert w.shape == (50, 10) and np.array_equal(w, T.eval_windows(data, 9, 50))
    assert np.array_equal(w[0], data[:10])  # the first window starts at the start
    assert np.array_equal(w[-1], data[-10:])  # the last window ends at the end
    capped = T.eval_windows(data, context=9, max_windows=10_000)
    assert capped.shape == (100, 10)  # never overlapping: at most len // (context + 1)
    assert np.array_equal(capped.reshape(-1), data)
    with pytest.raises(ValueError, match="fewer than one window"):
        T.eval_windows(data[:5], context=9, max_windows=1)


def test_bits_per_byte():
    targets = jnp.array([[1, 2, 3]])
    uniform = jnp.zeros((1, 3, 256))
    assert float(T.bits_per_byte(uniform, targets)) == pytest.approx(8.0, rel=1e-6)
    sure = jax.nn.one_hot(targets, 256) * 100.0
    assert float(T.bits_per_byte(sure, targets)) == pytest.approx(0.0, abs=1e-6)
    half = jnp.where(jnp.arange(256) < 2, 0.0, -jnp.inf)[None, None].repeat(3, 1)
    assert float(T.bits_per_byte(half, jnp.array([[0, 1, 0]]))) == pytest.approx(1.0)
    bf16 = jax.jit(T.bits_per_byte)(uniform.astype(jnp.bfloat16), targets)
    assert bf16.dtype == jnp.float32 and float(bf16) == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        T.bits_per_byte(uniform, targets[:, :2])
    assert math.isclose(float(T.bits_per_byte(np.zeros((2, 256)), np.array([0, 255]))), 8.0)


@needs_bibles
def test_windows_on_a_tiny_slice_of_the_bible():
    data = T.corpus_bytes("web", "validation")[:5000]
    w = T.eval_windows(data, context=64, max_windows=8)
    x, y = T.inputs_targets(w)
    logits = jax.nn.one_hot(x, 256)  # "next byte = this byte": a poor but finite predictor
    bpb = float(T.bits_per_byte(logits, y))
    assert 0.0 < bpb < 8.0


def test_text_import_does_not_load_tfds():
    """``experiments.data.text`` (the language-model suites) does not load TensorFlow Datasets;
    ``experiments.data``'s Fashion-MNIST helpers still import from the package, on first use."""
    import subprocess
    import sys

    code = (
        "import sys, experiments.data.text\n"
        "print('tensorflow_datasets' in sys.modules)\n"
        "from experiments.data import ensure_fashion_mnist\n"
        "print('tensorflow_datasets' in sys.modules, ensure_fashion_mnist.__module__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout.splitlines()
    assert out == ["False", "True experiments.data.fashion_mnist"]
