"""Model registry and families. Importing this package registers every model."""

from cnnkit.models import alexnet, backbones, tutorials  # noqa: F401  (registration side effects)
from cnnkit.models.init import INIT_SCHEMES, initialise
from cnnkit.models.lookup import get_model, get_spec
from cnnkit.models.registry import ModelSpec, list_aliases, list_models, pretrained_models

__all__ = [
    "INIT_SCHEMES", "ModelSpec", "get_model", "get_spec", "initialise", "list_aliases", "list_models", "pretrained_models",
]
