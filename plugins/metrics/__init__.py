"""Built-in metrics (registered through the musicfw_register_metrics hook)."""
