"""Built-in datasets (registered through the musicfw_register_datasets hook)."""
