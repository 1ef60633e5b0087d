"""Built-in loggers: ``wandb`` (offline in the run folder by default), ``csv``, ``tensorboard``
and ``none``, registered through ``musicfw_register_loggers`` like a third party's logger.

Whatever logger is chosen, the engine also appends every logged value to
``<run_dir>/history.jsonl`` (:mod:`musicfw.engine.loggers`).  The plugin classes here are
cheap; Lightning, wandb and tensorboard are imported inside their methods.
"""

from musicfw.core.hookspecs import hookimpl


@hookimpl
def musicfw_register_loggers(registry):
    from .builtin import CSV, NoLogger, TensorBoard, WandB

    for cls in (WandB, CSV, TensorBoard, NoLogger):
        registry.add(cls)
