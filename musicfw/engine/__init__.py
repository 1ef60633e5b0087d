"""The engine: what runs an experiment (experiment config, runner, run folder, data, token
cache and shards, training on Lightning, the generation loop, evaluation)."""
