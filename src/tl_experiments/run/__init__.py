"""What one run needs besides its model and data: where it runs (``jobs``, ``gpu_slots``),
what it prints (``console``) and logs (``loggers``, ``tensorboard_logger``), how it writes
checkpoints (``checkpoint_writer``) and its record (``record``: metrics.json, ``outputs``),
how it stops and resumes (``resume``), and its peak memory (``peak_memory``). Plain
arguments only: nothing here reads Hydra's state (the entry points pass ``JobInfo``)."""
