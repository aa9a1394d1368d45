"""The model zoo: every architecture of the lecture in clean PyTorch.

Networks that torchvision also has keep torchvision's attribute names, so a torchvision
state dict loads unchanged.
"""

from deploykit.zoo._registry import (
    ModelCard,
    Preprocessing,
    get_card,
    get_model,
    list_models,
    register_model,
)

__all__ = ["ModelCard", "Preprocessing", "get_card", "get_model", "list_models", "register_model"]
