"""The verdict table's rows: which rows are compared, the sign convention, the word."""

from __future__ import annotations

import json
import re

import pytest

from experiments import verdict
from experiments.lm.suite import METRIC as LM
from experiments.paper_toy.suite import METRIC as TOY
from experiments.recipe.suite import METRIC

RECIPE_METRIC = METRIC.to_json()


def _runs(old, new):
    return [
        {"seed": i, "test": {"old": o, "new": n}}
        for i, (o, n) in enumerate(zip(old, new, strict=True))
    ]


def _recipe(kind="class_split"):
    rows = {
        "adam": {"method": "adam", "runs": _runs([0.5, 0.6, 0.55], [0.9, 0.91, 0.9])},
        "sgd": {"method": "sgd", "runs": _runs([0.7, 0.72, 0.71], [0.9, 0.9, 0.91])},
        "profit": {"method": "profit", "runs": _runs([0.6, 0.62, 0.61], [0.8, 0.81, 0.8])},
        "profit_warmup": {
            "method": "profit_warmup",
            "runs": _runs([0.8, 0.82, 0.81], [0.92, 0.93, 0.92]),
        },
        "profit@main": {"method": "profit", "runs": _runs([0.6, 0.6, 0.6], [0.9, 0.9, 0.9])},
    }
    sel = {
        k: {"score": -0.1 * i, "hparams": {"learning_rate": 1e-3, "ref_ratio": 100.0}}
        for i, k in enumerate(["adam", "sgd", "profit", "profit_warmup"])
    }
    return {
        "selection": sel,
        "rows": rows,
        "best_baseline": "sgd",
        "config": {"task": {"kind": kind}},
        "plateau": {"plateaued": True},
        "metric": RECIPE_METRIC,
    }


def test_class_split_has_plain_and_warmup_rows_and_accuracy_signs():
    rows = verdict.suite_rows(_recipe(), "class split", "MLP")
    assert [r["task"] for r in rows] == [
        "class split",
        "class split (equal main steps)",
        "class split with warm-up",
    ]
    plain, _, warm = rows
    assert plain["baseline"] == "sgd" and plain["profit"] == "profit"
    assert plain["diff"]["mean"]["mean"] == pytest.approx(
        ((0.61 + 0.8033) - (0.71 + 0.9033)) / 2, abs=1e-3
    )
    assert plain["word"] == "worse" and warm["word"] == "better"


def test_same_label_task_takes_the_best_profit_row():
    rows = verdict.suite_rows(_recipe("covariate_shift"), "shift", "MLP")
    assert rows[0]["profit"] == "profit_warmup"  # best validation score among PROFIT rows


def test_a_baseline_that_had_not_plateaued_marks_its_rows_and_the_note(tmp_path):
    for mode, plateaued in (("mlp", True), ("shift_rotate", False)):
        res = _recipe("covariate_shift") | {"plateau": {"plateaued": plateaued}}
        (tmp_path / f"recipe_{mode}").mkdir()
        (tmp_path / f"recipe_{mode}" / "results.json").write_text(json.dumps(res))
    lines = verdict.table(tmp_path).splitlines()
    marked = [line for line in lines if "`sgd` †" in line]
    assert [line.split(" | ")[0] for line in marked] == [
        "| covariate shift: rotation",
        "| covariate shift: rotation (equal main steps)",  # the best PROFIT row with a twin
    ]
    assert sum("`sgd` |" in line for line in lines) == 2  # the plateaued suite's rows
    assert "† The best baseline had not plateaued" in lines[-1]


def test_errors_are_signed_so_that_positive_favours_profit(tmp_path):
    runs = lambda old, new: [
        {"seed": i, "test": {"old": o, "new": n}}
        for i, (o, n) in enumerate(zip(old, new, strict=True))
    ]
    res = {
        "metric": TOY.to_json(),
        "config": {},
        "plateau": None,
        "selection": {
            "full_ft": {"score": 1.0, "hparams": {"learning_rate": 5e-4}},
            "profit_rmsprop": {"score": 2.0, "hparams": {"learning_rate": 5e-4, "ref_ratio": None}},
        },
        "best_baseline": "full_ft",
        "rows": {
            "full_ft": {"method": "rmsprop", "runs": runs([0.5, 0.6, 0.7], [0.2, 0.2, 0.2])},
            "profit_rmsprop": {
                "method": "profit_rmsprop",
                "runs": runs([0.1, 0.2, 0.3], [0.2, 0.2, 0.2]),
            },
        },
    }
    (tmp_path / "paper_toy").mkdir()
    (tmp_path / "paper_toy" / "results.json").write_text(json.dumps(res))
    (row,) = verdict.rows(tmp_path)
    assert row["diff"]["old"]["mean"] == pytest.approx(0.4)  # PROFIT's old error is lower
    assert row["word"] == "better"
    table = verdict.table(tmp_path)
    assert "**better**" in table
    assert "`profit_rmsprop` (lr 0.0005, λ ratio auto)" in table
    assert "†" not in table  # the toys' budgets are the paper's; no plateau check


def test_diagnostics_table_averages_the_last_half_per_seed_then_over_seeds(tmp_path):
    res = _recipe("covariate_shift")

    def curve(values):  # logged at calls 100..400; the last half is calls 300 and 400
        return [
            {
                "step": 100 * (i + 1),
                "train_conflict": v,
                "train_cos_g_delta": -v,
                "train_removed_frac": v / 10,
            }
            for i, v in enumerate(values)
        ]

    for run, tail in zip(
        res["rows"]["profit_warmup"]["runs"], ([0.4, 0.6], [0.5, 0.7], [0.6, 0.8]), strict=True
    ):
        run["curve"] = curve([0.0, 0.0, *tail])
    res["rows"]["profit"]["runs"][0]["curve"] = [{"step": 100}]  # not the best row: ignored
    (tmp_path / "recipe_shift_noise").mkdir()
    (tmp_path / "recipe_shift_noise" / "results.json").write_text(json.dumps(res))
    rows = verdict.diagnostic_rows(tmp_path)
    assert list(rows) == ["covariate shift: noise (MLP): better"]
    table = verdict.diagnostics_table(tmp_path)
    # per-seed means 0.5, 0.6, 0.7: mean 0.6, standard error 0.1 / sqrt(3)
    assert "| covariate shift: noise (MLP): better | 0.600 ± 0.058 | -0.600 ± 0.058 |" in table
    assert "0.060 ± 0.006 |" in table


def test_diagnostics_labels_carry_the_plateau_mark(tmp_path):
    for mode, plateaued in (("shift_noise", True), ("shift_rotate", False)):
        res = _recipe("covariate_shift") | {"plateau": {"plateaued": plateaued}}
        for run in res["rows"]["profit_warmup"]["runs"]:
            run["curve"] = [
                {
                    "step": 100,
                    "train_conflict": 0.5,
                    "train_cos_g_delta": -0.1,
                    "train_removed_frac": 0.1,
                }
            ]
        (tmp_path / f"recipe_{mode}").mkdir()
        (tmp_path / f"recipe_{mode}" / "results.json").write_text(json.dumps(res))
    assert sorted(verdict.diagnostic_rows(tmp_path)) == [
        "covariate shift: noise (MLP): better",
        "covariate shift: rotation (MLP): better †",
    ]
    assert verdict.diagnostics_table(tmp_path).endswith(
        "† As in the verdict table: the best baseline had not plateaued."
    )


def test_figure_index_lists_only_suites_with_results_and_figures_that_exist(tmp_path):
    (tmp_path / "recipe_mlp").mkdir()
    (tmp_path / "recipe_mlp" / "results.json").write_text(json.dumps(_recipe()))
    for name in ("tradeoff.png", "curves.png"):  # no diagnostics.png
        (tmp_path / "recipe_mlp" / name).write_bytes(b"")
    (tmp_path / "toy2d").mkdir()  # a figure without a results file: not a verdict task
    (tmp_path / "toy2d" / "tradeoff.png").write_bytes(b"")
    lines = verdict.figures_table(tmp_path).splitlines()
    assert lines[2:] == [
        "| class split 0-4 → 5-9 | MLP "
        "| [trade-off](experiments/results/recipe_mlp/tradeoff.png) "
        "| [curves](experiments/results/recipe_mlp/curves.png) |"
    ]


def test_committed_figure_index_covers_every_verdict_task_with_files_that_exist():
    from experiments import report

    table = verdict.figures_table(report.RESULTS)
    links = re.findall(r"\]\(([^)]+)\)", table)
    assert links and all((report.ROOT / link).is_file() for link in links)
    indexed = [line.split(" | ")[:2] for line in table.splitlines()[2:]]
    for row in verdict.rows(report.RESULTS):
        assert any(
            row["task"].startswith(task.lstrip("| ")) and row["model"] == model
            for task, model in indexed
        ), row["task"]
    assert all("tradeoff" in line for line in table.splitlines()[2:])


def test_family_drops_the_variant_only():
    assert verdict.family("class split 0-4 → 5-9 with warm-up (equal main steps)") == (
        "class split 0-4 → 5-9"
    )
    assert verdict.family("paper toy (equal gradients)") == "paper toy"
    assert verdict.family("our toy (own design)") == "our toy (own design)"


def test_summary_counts_every_committed_verdict_row_once_under_its_family():
    from experiments import report

    rows = verdict.rows(report.RESULTS)
    table = verdict.summary_table(report.RESULTS)
    lines = [line.split(" | ") for line in table.splitlines()[2:] if line.startswith("| ")]
    assert [cells[0].lstrip("| ") for cells in lines] == list(
        dict.fromkeys(verdict.family(r["task"]) for r in rows)
    )
    assert sum(int(cells[2]) for cells in lines) == len(rows)
    for cells in lines:
        words = re.findall(r"(\d+) (better|no different|worse)", cells[3])
        assert sum(int(n) for n, _ in words) == int(cells[2])
        family = cells[0].lstrip("| ")
        models = dict.fromkeys(r["model"] for r in rows if verdict.family(r["task"]) == family)
        assert cells[1].split("; ") == list(models)  # a name with a comma stays one name
    links = re.findall(r"\]\(([^)]+)\)", table)
    assert links and all((report.ROOT / link).is_file() for link in links)


def test_units_note_names_the_units_of_the_rows_present():
    rows = [{"unit": m.diff_unit} for m in (METRIC, TOY)]
    assert verdict.units_note(rows) == (
        "accuracy points for the image tasks, minus the MSE for the toys"
    )
    assert verdict.units_note([*rows, {"unit": LM.diff_unit}]).endswith(
        ", minus the bits per byte for the language models"
    )
    assert verdict.units_note([{"unit": LM.diff_unit}]).startswith("minus the bits per byte")
    with pytest.raises(KeyError, match="no phrase for the unit"):
        verdict.units_note([{"unit": "furlongs"}])
