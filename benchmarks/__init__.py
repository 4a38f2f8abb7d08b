"""Side-by-side benchmarks of logger_client, tensorboardX and torch.utils.tensorboard.

`python -m benchmarks` (see `__main__`) runs every workload against all three writers in one run:
what each `add_*` call costs the training thread (`calls`), scalars per second until everything is
written (`throughput`), the overhead on a real training loop (`training_loop`), peak memory of the
training process and the daemon (`memory`), each checked against what was read back from disk
(`verify`). `plan` holds the sizes and targets, `report` the table and JSON.
"""
