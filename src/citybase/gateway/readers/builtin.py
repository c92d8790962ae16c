"""Built-in readers, registered through the same `register` that plugins use."""
