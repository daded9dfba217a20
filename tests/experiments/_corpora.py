"""Skip markers for the tests that read the text corpora (Debian packages, absent on some
machines): each names the packages to install."""

from __future__ import annotations

import pytest

from experiments.data import text as T


def _installed(read) -> bool:
    try:
        read()
    except T.CorpusUnavailableError:
        return False
    return True


needs_bibles = pytest.mark.skipif(
    not _installed(lambda: (T.read_bible("web"), T.read_bible("kjv"))),
    reason=f"SWORD modules not in {T.SWORD_DIR} "
    "(sudo apt-get install sword-text-web sword-text-kjv)",
)
needs_pydocs = pytest.mark.skipif(
    not _installed(T.pydocs_files),
    reason=f"Python docs sources not in {T.PYDOCS_DIR} (sudo apt-get install python3.11-doc)",
)
