"""What the export tests share: predict's probabilities through the command, their comparison, and a model
rebuilt from a safetensors file's own metadata."""

from __future__ import annotations

import json
from pathlib import Path


def predicted_probabilities(invoke, model, images) -> dict[str, list[float]]:
    """cnnkit predict --json: every class's probability per image, in class order."""
    code, stdout, stderr = invoke("predict", images, "--model", model, "--top-k", "100", "--json")
    assert code == 0, stderr
    return {r["path"]: [p["probability"] for p in sorted(r["predictions"], key=lambda p: p["index"])]
            for r in json.loads(stdout)}


def assert_same_predictions(exported: dict, reference: dict, tolerance: float = 1e-4) -> None:
    assert exported.keys() == reference.keys() and len(reference) >= 4
    worst = max(abs(a - b) for name in reference for a, b in zip(exported[name], reference[name]))
    assert worst <= tolerance, worst
    assert len({tuple(p) for p in reference.values()}) > 1  # the images really differ


def rebuilt_from_safetensors(path: Path):
    """(the model, the cnnkit document): rebuilt as a reader of the file alone would, from its metadata and tensors."""
    from safetensors import safe_open

    from cnnkit.engine.checkpoint import build_model

    with safe_open(str(path), framework="pt") as f:
        document = json.loads(f.metadata()["cnnkit"])
        state = {name: f.get_tensor(name) for name in f.keys()}
    section = document["model"]
    model = build_model(section["name"], section["kwargs"], section).eval()
    model.load_state_dict(state)
    return model, document
