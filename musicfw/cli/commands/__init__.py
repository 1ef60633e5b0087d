"""Core's own verbs of the ``musicfw`` CLI, one :class:`~musicfw.core.command.Command` per
module, written as a plugin writes its verbs (:data:`musicfw.cli.COMMANDS` lists them)."""
