"""torchrun's environment variables, checked together before a run starts (issue 13).

A stray `RANK=1` left in a shell used to make a plain `cnnkit train` a silent
"rank 1": it trained, printed nothing and exited 0. A run is distributed only
when WORLD_SIZE > 1 and RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT are all
there and agree; anything partial or out of range is a usage error naming the
variables, and so is a CNNKIT_DDP_TIMEOUT that is not a positive number.
(tests/test_distributed.py runs real torchrun launches, which must still work.)
"""

from __future__ import annotations

import pytest

from conftest import assert_clean_failure

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "CNNKIT_DDP_TIMEOUT")
MASTER = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
TRAIN = ["train", "perceptron", "--epochs", "1", "--limit", "64", "--device", "cpu"]


@pytest.fixture
def clean_env(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)

    def set_env(values: dict) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


# (environment, the variable names the error line must mention)
BROKEN = {
    "stray RANK": ({"RANK": "1"}, ["RANK", "WORLD_SIZE"]),
    "stray LOCAL_RANK": ({"LOCAL_RANK": "0"}, ["LOCAL_RANK", "WORLD_SIZE"]),
    "WORLD_SIZE alone": ({"WORLD_SIZE": "2"}, ["RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"]),
    "no rendezvous": ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, ["MASTER_ADDR", "MASTER_PORT"]),
    "rank past the world": ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", **MASTER}, ["RANK"]),
    "negative rank": ({"WORLD_SIZE": "2", "RANK": "-1", "LOCAL_RANK": "0", **MASTER}, ["RANK"]),
    "rank 1 of 1": ({"WORLD_SIZE": "1", "RANK": "1"}, ["RANK"]),
    "word for a size": ({"WORLD_SIZE": "two", "RANK": "0"}, ["WORLD_SIZE"]),
    "zero world": ({"WORLD_SIZE": "0"}, ["WORLD_SIZE"]),
    "local rank past the node": ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2", **MASTER},
                                 ["LOCAL_RANK"]),
    "local rank not a number": ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "x", **MASTER}, ["LOCAL_RANK"]),
    "bad port": ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "http"},
                 ["MASTER_PORT"]),
    **{f"timeout {value}": ({"CNNKIT_DDP_TIMEOUT": value}, ["CNNKIT_DDP_TIMEOUT"])
       for value in ("abc", "nan", "0", "-5", "inf", "1e400", "")},
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_partial_or_inconsistent_torchrun_environment_is_a_usage_error(cli, clean_env, tmp_path, case):
    env, names = BROKEN[case]
    clean_env(env)
    code, out, err = cli(*TRAIN)
    lines = assert_clean_failure(code, err, expected_code=2)
    assert all(name in lines[0] for name in names), err
    assert len(lines) == 2 and lines[1].startswith("hint:") and ("torchrun" in lines[1] or "unset" in lines[1]), err
    assert out == ""
    assert not (tmp_path / "checkpoints").exists(), "the run started anyway"


@pytest.mark.parametrize("env", [{}, {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"},
                                 {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "CNNKIT_DDP_TIMEOUT": "30"}],
                         ids=["none", "torchrun-one-process", "rendezvous-only"])
def test_a_single_process_environment_trains_and_reports(cli, clean_env, tmp_path, env):
    """The control (base gets these right too): one process, whatever torchrun would set for it, prints its run."""
    clean_env(env)
    code, out, err = cli(*TRAIN, "--quiet")
    assert code == 0, err
    assert out.strip() == "checkpoints/perceptron-mnist-sample"
    assert (tmp_path / out.strip() / "last.pt").is_file()


def test_world_reads_a_full_torchrun_environment(clean_env):
    from cnnkit.engine.distributed import World, timeout_s, world

    clean_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", **MASTER,
               "CNNKIT_DDP_TIMEOUT": "7.5"})
    assert world() == World(rank=3, size=4, local_rank=1, local_size=2)
    assert timeout_s() == 7.5
