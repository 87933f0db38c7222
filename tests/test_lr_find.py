"""cnnkit lr-find: the learning-rate range test through the installed command."""

from __future__ import annotations

import json

import pytest

from conftest import assert_clean_failure

SMALL = ["lenet", "--limit", "640", "--batch-size", "32", "--steps", "30"]


def test_quiet_prints_only_the_rate_and_nothing_but_the_plot_is_written(cli, tmp_path):
    code, out, err = cli("lr-find", *SMALL, "--quiet", "--out", "lr.png")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and 1e-7 < float(lines[0]) < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr.png"]  # no run directory
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_holds_the_ramp_and_the_steepest_descent(cli, tmp_path):
    code, out, err = cli("lr-find", *SMALL, "--optimizer", "sgd", "--end-lr", "100", "--json",
                         "--out", tmp_path / "plot.png")
    assert code == 0, err
    doc = json.loads(out)
    lrs, losses = doc["lrs"], doc["losses"]
    assert doc["steps_run"] == len(lrs) == len(losses) <= 30
    growth = (100 / 1e-7) ** (1 / 29)
    assert lrs[0] == pytest.approx(1e-7) and lrs[1] / lrs[0] == pytest.approx(growth)
    assert doc["diverged"]  # sgd at rates up to 100 blows the loss up: the test stops there
    assert losses[-1] > 4 * min(losses) or doc["steps_run"] < 30  # past 4x the best, or a non-finite loss
    i = doc["suggested_index"]
    assert doc["suggested_lr"] == lrs[i] and 10 <= i < len(lrs) - 1
    assert losses[i + 1] - losses[i - 1] < 0  # on a falling stretch
    assert not (tmp_path / "checkpoints").exists()


def test_the_suggestion_is_the_steepest_point_of_a_known_curve():
    from cnnkit.engine.lr_find import steepest_descent

    losses = [2.3] * 20 + [2.3 - 0.05 * k for k in range(5)] + [2.05 - 0.3 * k for k in range(3)] + [1.5, 1.6, 3.0]
    assert steepest_descent(losses) == 26  # the middle of the 0.3-per-step drop
    assert steepest_descent([2.3] * 5) is None  # too few points to say


def test_a_range_that_diverges_at_once_says_it_cannot_suggest_a_rate(cli, tmp_path):
    code, out, err = cli("lr-find", *SMALL, "--optimizer", "sgd", "--start-lr", "1e3", "--end-lr", "1e6",
                         "--out", tmp_path / "plot.png")
    assert "too few to suggest a rate" in assert_clean_failure(code, err, after_output=True)[0]


def test_a_range_that_does_not_go_up_is_a_usage_error(cli):
    code, out, err = cli("lr-find", "lenet", "--start-lr", "1", "--end-lr", "0.1")
    assert_clean_failure(code, err, 2)
    assert out == ""
