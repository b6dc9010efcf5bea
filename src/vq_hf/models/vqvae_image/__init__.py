"""The CIFAR-10 family (model type ``"vqvae_image"``)."""

from .configuration_vqvae_image import VQVAEImageConfig
from .image_processing_vqvae_image import VQVAEImageProcessor
from .modeling_vqvae_image import VQVAEImageModel

__all__ = ["VQVAEImageConfig", "VQVAEImageModel", "VQVAEImageProcessor"]
