"""benchmarks/large_models.py's model names. Its measurement and depth fit run on a tiny ViT in
tests/benchmarks/test_benchmarks_smoke.py (``run_all --quick``: each configuration in its own
process, as the real runs)."""

import pytest

from benchmarks import large_models as lm

TINY = "w16-d1-h2-m32/8"


def test_make_model_named_and_custom():
    assert lm.make_model("B/16").width == 768
    assert lm.make_model("L/16").depth == 24
    m = lm.make_model(TINY)
    assert (m.width, m.depth, m.num_heads, m.mlp_dim, m.patch_size) == (16, 1, 2, 32, 8)
    with pytest.raises(ValueError, match="expected one of"):
        lm.make_model("w32-d1/8x")
