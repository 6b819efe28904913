"""newapi-operator data plane: the OpenAI-compatible gateway."""

__version__ = "0.1.0"
