"""ragqa: the command line and the one place that wires the parts together from settings."""
