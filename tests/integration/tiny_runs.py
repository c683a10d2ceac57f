"""`--set` overrides shared by the integration tests: one tiny ANT run on MNIST."""

# 12 steps of 64 images: restarts every 4 steps, snapshots every 3, so one epoch sees
# several restarts and snapshots.
TINY_ANT_RUN = [
    "data.limit_train=768",
    "data.limit_val=128",
    "data.val_suite_images=32",
    "data.batch_size=64",
    "ant.epsilon=6.0",
    "ant.restart_iterations=4",
    "ant.restart_every_steps=4",
    "ant.snapshot_every_steps=3",
    "runtime.torch_threads=1",
    "runtime.log_every_steps=1000",
]
