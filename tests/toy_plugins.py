"""Small plugins used by the foundation tests (registered through the real hooks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from musicfw import hookimpl


class ToyDataset:
    """A dataset that exists only in the tests."""

    name = "toy_data"

    @dataclass
    class Config:
        size: int = 4

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_config(cls, config, **context):
        return cls(config)


class ToyModel:
    """A model card that exists only in the tests."""

    name = "toy_model"

    @dataclass
    class Config:
        hidden_size: int = 8
        dropout: float = 0.0
        cell: str = field(default="lstm", metadata={"choices": ("lstm", "gru")})

    def __init__(self, config, tokenizer):
        self.config, self.tokenizer = config, tokenizer

    @classmethod
    def from_config(cls, config, tokenizer=None, **context):
        return cls(config, tokenizer)


class ToyTokenizer:
    """A tokenizer card that exists only in the tests."""

    name = "toy_tok"
    kind = "categorical"

    @dataclass
    class Config:
        resolution: int = 4

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_config(cls, config, **context):
        return cls(config)


class ToyPlugin:
    @hookimpl
    def musicfw_register_datasets(self, registry):
        registry.add(ToyDataset)

    @hookimpl
    def musicfw_register_models(self, registry):
        registry.add(ToyModel)

    @hookimpl
    def musicfw_register_tokenizers(self, registry):
        registry.add(ToyTokenizer)


class DuplicateSampler:
    """Claims a built-in sampler's name."""

    name = "top_p"

    @dataclass
    class Config:
        pass

    @classmethod
    def from_config(cls, config, **context):
        return cls()


class DuplicatePlugin:
    __name__ = "duplicate-plugin"

    @hookimpl
    def musicfw_register_samplers(self, registry):
        registry.add(DuplicateSampler)


class MisspelledPlugin:
    @hookimpl
    def musicfw_register_tokenisers(self, registry):  # note the typo
        pass
