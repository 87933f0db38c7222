"""The figures, checked by content: titles, tick values and markers on the matplotlib objects, and the
sample grid's choice of images; the inspect-dataset options through the installed command."""

from __future__ import annotations

import pytest
import torch

from conftest import run_cnnkit


def history(epochs: int = 4, phases: tuple[str, ...] = ("train",)) -> list[dict]:
    per_phase = -(-epochs // len(phases))
    rows = []
    for epoch in range(1, epochs + 1):
        val_acc = [0.5, 0.8, 0.7, 0.75, 0.6, 0.65][epoch - 1]
        rows.append({"epoch": epoch, "step": 10 * epoch, "phase": phases[(epoch - 1) // per_phase],
                     "train_loss": 2.0 / epoch, "train_acc": 0.4 + 0.1 * epoch, "val_loss": 1.0 - val_acc,
                     "val_acc": val_acc, "lr": 0.01 / epoch})
    return rows


@pytest.fixture
def figures():
    from cnnkit.viz.figure import pyplot

    yield
    pyplot().close("all")


def test_curves_have_title_whole_epochs_best_epoch_and_learning_rate(figures):
    from cnnkit.viz.curves import curves_figure

    fig = curves_figure(history(), "lenet on cifar10", [{"epoch": 1, "step": 5, "val_loss": 0.6, "val_acc": 0.4}])
    fig.canvas.draw()
    assert fig._suptitle.get_text() == "lenet on cifar10"
    acc, loss, lr = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["accuracy", "loss", "learning rate (at epoch end)"]
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    best = [line for line in acc.get_lines() if line.get_label() == "best (epoch 2)"]
    assert len(best) == 1 and list(best[0].get_xdata()) == [2] and list(best[0].get_ydata()) == [0.8]
    midway = [line for line in acc.get_lines() if line.get_label() == "validation (--val-every)"]
    assert list(midway[0].get_xdata()) == [0.5] and list(midway[0].get_ydata()) == [0.4]  # step 5 of 10: half epoch 1
    assert list(lr.get_lines()[0].get_ydata()) == [0.01, 0.005, 0.01 / 3, 0.0025]


def test_the_star_marks_the_epoch_best_pt_comes_from_when_val_every_chose_it(figures):
    from cnnkit.viz.curves import curves_figure

    acc = curves_figure(history(), best=4).axes[0]  # epoch 2 ended best, but a midway validation in 4 beat it
    assert [line.get_label() for line in acc.get_lines() if line.get_label().startswith("best")] == ["best (epoch 4)"]


def test_finetune_phase_boundary_is_drawn(figures):
    from cnnkit.viz.curves import curves_figure

    fig = curves_figure(history(4, ("head", "unfreeze")))
    for ax in fig.axes:
        starts = [line for line in ax.get_lines() if line.get_label() == "unfreeze starts"]
        assert len(starts) == 1 and list(starts[0].get_xdata()) == [2.5, 2.5]
    assert not any("starts" in line.get_label() for line in curves_figure(history()).axes[0].get_lines())


def test_confusion_matrix_is_row_normalised_with_counts(figures):
    from cnnkit.viz.confusion import confusion_figure

    counts = torch.tensor([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    fig = confusion_figure(counts, ["cat", "dog", "empty"])
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    assert shown[0].tolist() == [0.8, 0.2, 0.0] and shown[1].tolist() == [0.5, 0.5, 0.0] and shown[2].tolist() == [0, 0, 0]
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.texts[:3]] == ["80%\n8", "20%\n2", "0%\n0"]


def test_sample_grid_takes_classes_in_turn():
    from cnnkit.data.dataset import TensorSplit
    from cnnkit.viz.grid import round_robin, samples_across_classes

    labels = [0] * 6 + [1] * 3 + [2]
    assert round_robin(labels, 5) == [0, 6, 9, 1, 7]
    assert round_robin(labels, 100) == [0, 6, 9, 1, 7, 2, 8, 3, 4, 5]
    split = TensorSplit(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.tensor(labels))
    images, chosen = samples_across_classes(split, 1, (1, 1), 4)
    assert chosen == [0, 1, 2, 0] and images.flatten().tolist() == [0, 6, 9, 1]


def test_inspect_out_alone_draws_a_grid_and_quiet_prints_the_essentials(tmp_path):
    from PIL import Image

    grid = tmp_path / "grid.png"
    result = run_cnnkit("inspect-dataset", "mnist-sample", "--out", grid, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("mnist-sample: 10 classes, 1x28x28")
    assert lines[1].startswith("Normalize(mean=") and lines[2] == str(grid)
    with Image.open(grid) as image:  # 16 images, 8 columns: two rows
        assert image.format == "PNG" and image.width > 2 * image.height > 0
