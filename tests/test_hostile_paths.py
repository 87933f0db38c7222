"""Paths: missing, a directory where a file belongs, a file where a directory belongs, unreadable,
and names with spaces and non-ASCII characters (which must simply work).

Cases other modules already check are left to them: evaluate/predict/summary/export-idx with a
missing input, train --out and export-idx --out that are files, finetune --weights that is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_clean_failure, digests
from hostile import make_unreadable, picture, shared_mobilenet_weights


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return shared_mobilenet_weights(tmp_path_factory)


@pytest.fixture
def place(tmp_path, trained, weights) -> dict[str, str]:
    """Names the cases below refer to: a plain file, a plain directory, a digit image, a run, weights."""
    (tmp_path / "a-file.txt").write_text("just a file\n")
    (tmp_path / "a-dir").mkdir()
    Image.fromarray(picture()).save(tmp_path / "digit.png")
    return {"FILE": str(tmp_path / "a-file.txt"), "DIR": str(tmp_path / "a-dir"), "MISSING": str(tmp_path / "no-such"),
            "IMAGE": str(tmp_path / "digit.png"), "RUN": str(trained), "WEIGHTS": str(weights)}


CASES = {
    # missing
    "visualize --checkpoint missing": (["visualize-filter", "--checkpoint", "MISSING", "--out", "k.png"], "checkpoint not found"),
    "visualize --image missing": (["visualize-filter", "--checkpoint", "RUN", "--image", "MISSING", "--out", "k.png"], "no such file"),
    "visualize --dataset missing": (["visualize-filter", "--dataset", "MISSING", "--out", "k.png"], "no such directory"),
    "inspect missing": (["inspect-dataset", "MISSING"], "no such directory"),
    "train --dataset missing": (["train", "perceptron", "--dataset", "MISSING"], "no such directory"),
    "train --resume missing": (["train", "--resume", "MISSING"], "checkpoint not found"),
    "finetune --resume missing": (["finetune", "--resume", "MISSING"], "checkpoint not found"),
    "finetune --dataset missing": (["finetune", "mobilenet_v2", "--weights", "WEIGHTS", "--dataset", "MISSING"], "no such directory"),
    "evaluate --dataset missing": (["evaluate", "RUN", "--dataset", "MISSING"], "no such directory"),
    "download --from missing": (["download", "mnist", "--from", "MISSING"], "no such file"),
    # a directory where a file belongs
    "visualize --image dir": (["visualize-filter", "--checkpoint", "RUN", "--image", "DIR", "--out", "k.png"], "is a directory"),
    "visualize --out dir": (["visualize-filter", "--out", "DIR"], "a directory is in the way"),
    "inspect --show --out dir": (["inspect-dataset", "mnist-sample", "--show", "4", "--out", "DIR"], "a directory is in the way"),
    "evaluate --confusion dir": (["evaluate", "RUN", "--confusion", "DIR"], "a directory is in the way"),
    "finetune --weights dir": (["finetune", "mobilenet_v2", "--weights", "DIR", "--dataset", "mnist-sample"], "is a directory"),
    "evaluate dir without checkpoint": (["evaluate", "DIR"], "no checkpoint in"),
    # a file where a directory belongs
    "inspect file": (["inspect-dataset", "FILE"], "is a file"),
    "summary --dataset file": (["summary", "cnn", "--dataset", "FILE"], "is a file"),
    "train --dataset file": (["train", "perceptron", "--dataset", "FILE"], "is a file"),
    "finetune --out file": (["finetune", "mobilenet_v2", "--weights", "WEIGHTS", "--dataset", "mnist-sample", "--limit", "8",
                             "--out", "FILE"], "cannot write to run directory"),
    "visualize --out under a file": (["visualize-filter", "--out", "FILE/k.png"], "a file is in the way"),
    "evaluate --misclassified file": (["evaluate", "RUN", "--misclassified", "FILE"], "a file is in the way"),
    "inspect --data-dir file": (["inspect-dataset", "mnist", "--data-dir", "FILE"], "Not a directory"),
    "download --data-dir file": (["download", "mnist", "--data-dir", "FILE", "--mirror", "http://127.0.0.1:9/"], "Not a directory"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_wrong_kind_of_path_is_one_clean_error(cli, place, tmp_path, case):
    args, message = CASES[case]
    args = [place.get(a, a.replace("FILE", place["FILE"])) for a in args]
    before = digests(tmp_path / "a-file.txt")
    code, _, err = cli(*args)
    lines = assert_clean_failure(code, err, after_output="finetune" in case)  # finetune notes its phases first
    assert message in lines[0], err
    assert digests(tmp_path / "a-file.txt") == before
    assert list((tmp_path / "a-dir").iterdir()) == []
    assert not (tmp_path / "k.png").exists()


# ---- no read permission ----------------------------------------------------------------------

UNREADABLE = {
    "checkpoint for evaluate": (["evaluate", "TARGET"], "checkpoint", "permission denied"),
    "checkpoint for predict": (["predict", "IMAGE", "--model", "TARGET"], "checkpoint", "permission denied"),
    "image for visualize": (["visualize-filter", "--checkpoint", "RUN", "--image", "TARGET", "--out", "k.png"], "image",
                            "permission denied"),
    "IDX file for inspect": (["inspect-dataset", "DIR"], "idx", "permission denied"),
    "IDX file for export": (["export-idx", "DIR", "--out", "out"], "idx", "permission denied"),
    "class folder for train": (["train", "perceptron", "--dataset", "DIR"], "folder", "permission denied"),
}


def unreadable_target(kind: str, tmp_path: Path, trained: Path) -> tuple[Path, Path]:
    """(what to pass as TARGET/DIR, the file or folder that cannot be read)."""
    if kind == "checkpoint":
        path = Path(shutil.copy(trained / "best.pt", tmp_path / "locked.pt"))
        return path, path
    if kind == "image":
        path = tmp_path / "locked.png"
        Image.fromarray(picture()).save(path)
        return path, path
    root = tmp_path / "ds"
    if kind == "idx":
        from cnnkit.data.idx import write_idx
        import numpy as np

        root.mkdir()
        write_idx(root / "train-images-idx3-ubyte", np.zeros((4, 8, 8), np.uint8))
        write_idx(root / "train-labels-idx1-ubyte", np.array([0, 1, 0, 1], np.uint8))
        return root, root / "train-images-idx3-ubyte"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(picture()).save(root / cls / "1.png")
    return root, root / "dog"


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_input_is_permission_denied(cli, place, tmp_path, trained, monkeypatch, case):
    """Simulated (tests run as root, and chmod 000 does not stop root): opens of the target raise EACCES."""
    args, kind, message = UNREADABLE[case]
    target, locked = unreadable_target(kind, tmp_path, trained)
    before = digests(target)
    names = {**place, "TARGET": str(target), "DIR": str(target)}
    make_unreadable(monkeypatch, locked)
    code, _, err = cli(*[names.get(a, a) for a in args])
    lines = assert_clean_failure(code, err, after_output=case.startswith("checkpoint for predict"))
    assert message in lines[0].lower() or message in err.lower(), err
    assert str(locked.name) in err
    monkeypatch.undo()
    assert digests(target) == before


def test_chmod_000_for_real(cli, tmp_path, trained):
    locked = Path(shutil.copy(trained / "best.pt", tmp_path / "locked.pt"))
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads (the simulated test above covers it)")
        code, _, err = cli("evaluate", locked)
        assert "permission denied" in assert_clean_failure(code, err)[0]
    finally:
        locked.chmod(0o644)


# ---- spaces and non-ASCII names work ---------------------------------------------------------


def test_names_with_spaces_and_non_ascii_characters_work_everywhere(cli, tmp_path):
    data = tmp_path / "données ü 图" / "digits idx"
    runs = tmp_path / "runs é"
    code, _, err = cli("export-idx", "mnist-sample", "--out", data, "--limit", "300")
    assert code == 0, err
    code, out, err = cli("inspect-dataset", data, "--show", "4", "--out", tmp_path / "grille ü.png", "--json")
    assert code == 0, err
    assert json.loads(out)["splits"]["train"]["samples"] == 300
    code, out, err = cli("train", "oneconv", "--dataset", data, "--epochs", "1", "--out", runs, "--name", "run ñ 1", "--quiet")
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert run == runs / "run ñ 1" and (run / "best.pt").is_file()
    picture_path = tmp_path / "photos à trier" / "ß 图.png"
    picture_path.parent.mkdir()
    Image.fromarray(picture()).save(picture_path)
    for args in (
        ["evaluate", run, "--confusion", tmp_path / "matrice ü.png"],
        ["predict", picture_path, "--model", run],
        ["predict", str(picture_path.parent / "*.png"), "--model", run / "best.pt"],
        ["summary", "--checkpoint", run],
        ["visualize-filter", "--checkpoint", run, "--image", picture_path, "--out", tmp_path / "filtres é.png"],
        ["visualize-filter", "--dataset", data, "--out", tmp_path / "noyau 图.png"],
        ["train", "--resume", run, "--epochs", "2", "--quiet"],
    ):
        code, out, err = cli(*args)
        assert code == 0, (args, err)
    for name in ("grille ü.png", "matrice ü.png", "filtres é.png", "noyau 图.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
