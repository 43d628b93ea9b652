"""The poisoning-budget figure marks each attack's own budget: a line where a certificate reaches it,
its size at the panel's edge where none does."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from robustcert import plot  # noqa: E402
from robustcert.results import Metric, tidy_rows, write_rows  # noqa: E402
from robustcert.workflow.aggregation import attack_budgets  # noqa: E402

COLORS = {"dpa": "tab:blue"}


def curve(attack: str) -> plot.Curve:
    """Ten test points certified up to radii 0..9, every one correct."""
    return plot.Curve(attack, "dpa", "dpa", (pd.DataFrame({"radius": range(10), "correct": [True] * 10}),))


def panels(budgets: dict[str, float]) -> list[plt.Axes]:
    curves = [curve("none"), curve("backdoor_few"), curve("backdoor")]
    fig = plot._budget_panels(curves, plot.np.arange(0, 11), False, {}, COLORS, attack_budgets=budgets)
    return [ax for ax in fig.axes if ax.get_title()]


def test_a_budget_within_the_certificates_is_a_dashed_line_in_its_panel():
    axes = {ax.get_title(): ax for ax in panels({"backdoor_few": 4, "backdoor": 50})}
    marked = [line for line in axes["backdoor_few"].get_lines() if line.get_label() == "the attack's budget"]
    assert len(marked) == 1 and list(marked[0].get_xdata()) == [4, 4]
    assert "the attack's budget" in [t.get_text() for t in axes["backdoor_few"].get_legend().get_texts()]
    assert not [t for t in axes["backdoor_few"].texts if "budget" in t.get_text()]
    plt.close("all")


def test_a_budget_beyond_every_certificate_is_written_in_the_title_and_clean_data_has_none():
    axes = {ax.get_title(): ax for ax in panels({"none": 0, "backdoor_few": 4, "backdoor": 50})}
    beyond = axes["backdoor (budget 50: beyond every certificate)"]
    assert not beyond.texts and not [line for line in beyond.get_lines() if line.get_label() == "the attack's budget"]
    assert beyond.get_xlim()[1] == 10  # the curves keep their scale
    assert not [line for line in axes["none"].get_lines() if line.get_label() == "the attack's budget"]
    assert not axes["none"].texts
    plt.close("all")


def test_the_budgets_are_read_from_the_attacks_budget_rows(tmp_path: Path):
    paths = []
    for attack, size in (("none", 0), ("backdoor", 50), ("backdoor", 52)):  # two seeds of one attack
        keys = dict(dataset="digits", attack=attack, attack_type="backdoor", defense="-", method="-", certificate="-")
        path = tmp_path / f"{attack}{len(paths)}.tsv"
        write_rows(path, tidy_rows(keys, {"seed": len(paths)}, [Metric("poisoned", size / 2),
                                                                Metric("symmetric_difference", size)]))
        paths.append(str(path))
    assert attack_budgets(paths) == {"none": 0.0, "backdoor": 52.0}
    assert attack_budgets([]) == {}


def test_the_figure_is_written_with_the_budgets(tmp_path: Path):
    outputs = [tmp_path / "budget.png", tmp_path / "budget.pdf"]
    plot.plot_poison_budget([curve("backdoor")], {"backdoor": 0.5}, COLORS, "t", outputs,
                            attack_budgets={"backdoor": 3})
    assert all(p.stat().st_size > 0 for p in outputs)
