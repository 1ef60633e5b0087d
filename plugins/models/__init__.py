"""Built-in models (registered through the musicfw_register_models hook)."""
