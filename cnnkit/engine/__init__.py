"""Training engine: the loop, evaluation, checkpoints, metrics and progress."""
