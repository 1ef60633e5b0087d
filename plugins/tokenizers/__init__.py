"""Built-in tokenizers (registered through the musicfw_register_tokenizers hook)."""
