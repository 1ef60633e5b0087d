"""Sub-commands of the ``musicfw`` CLI: each module has ``add_parser`` and ``main``."""
