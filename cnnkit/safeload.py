"""Reading torch files without running code: every load is weights_only=True, every bad file one CheckpointError.

At the bottom of the package (beside errors and fileio) so that models, data, hub and engine can all read
checkpoints and state_dicts without importing one another.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from cnnkit.errors import CheckpointError
from cnnkit.fileio import corrupt_zip_member


def _check_crcs(path: Path) -> None:
    """Unlike torch.load, refuse a checkpoint whose zip CRCs fail: it would load as silently wrong weights."""
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy format, or not a zip at all: torch.load says what is wrong
        bad = corrupt_zip_member(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(f"{path} is truncated or not a PyTorch file ({exc})",
                              "the previous good checkpoint of a run is its best.pt or last.pt") from None
    except OSError as exc:
        if isinstance(exc, (PermissionError, IsADirectoryError)):
            raise
        raise CheckpointError(f"{path} cannot be read ({exc})") from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupt: {bad.split('/', 1)[-1]} fails its CRC check",
                              "the file was damaged on disk or in transfer; use another copy, or the run's other checkpoint")


def safe_torch_load(path: Path):
    """torch.load with weights_only=True; every way a file can be bad becomes a CheckpointError."""
    _check_crcs(path)
    try:
        with warnings.catch_warnings():
            # A damaged legacy file makes torch warn about its pickle protocol before failing: our error says it all.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:  # the pickle names a callable: it would run code
            raise CheckpointError(
                f"refused to load {path}: it holds pickled code or objects, not plain tensors and values",
                "cnnkit loads checkpoints with weights_only=True and never runs code from a file",
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch file", "pass a .pt file written by torch.save") from None
    except Exception as exc:  # the legacy unpickler meets damaged bytes with KeyError, IndexError, EOFError...
        if isinstance(exc, (PermissionError, IsADirectoryError)):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "empty or cut short"
        raise CheckpointError(
            f"{path} is truncated or not a PyTorch file ({first[:160]})",
            "the previous good checkpoint of a run is its best.pt or last.pt",
        ) from None


def load_state_dict_file(path: Path) -> dict:
    """Read a state_dict safely; refuse anything that is not one."""
    if path.is_dir():  # "not found" would send the user looking for a file that is there
        raise CheckpointError(f"weights file {path} is a directory", "pass the state_dict file itself (a .pth or .pt)")
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:  # an empty, truncated, foreign or code-running file: one clean error, never a traceback
        state = safe_torch_load(path)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc.message}",
                              "the file must be a state_dict saved with torch.save; cnnkit never unpickles code") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state_dict (a dict of parameter tensors)")
    return state
