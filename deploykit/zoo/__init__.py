"""The model zoo: every architecture of the lecture in clean PyTorch.

Networks that torchvision also has keep torchvision's attribute names, so a torchvision
state dict loads unchanged. Importing this package imports torch and registers every family
(torchvision's way); the list of models without torch is ``deploykit.analyze.zoo_catalog()``.
"""

# Importing a family runs its @register_model decorators.
from deploykit.zoo import (  # noqa: F401
    alexnet,
    googlenet,
    mobilenet,
    preact_resnet,
    resnet,
    shufflenet,
    vgg,
)
from deploykit.zoo._registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelCard,
    Preprocessing,
    get_card,
    get_model,
    list_models,
    register_model,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelCard",
    "Preprocessing",
    "get_card",
    "get_model",
    "list_models",
    "register_model",
]
