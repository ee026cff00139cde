"""The task-agnostic engine: training loop, distribution, checkpoints, tracking, evaluation."""
