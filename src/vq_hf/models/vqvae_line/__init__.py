"""The handwriting-line family with the PixelCNN decoder (model type ``"vqvae_line"``)."""

from .configuration_vqvae_line import VQVAELineConfig
from .image_processing_vqvae_line import VQVAELineImageProcessor
from .modeling_vqvae_line import VQVAELineModel

__all__ = ["VQVAELineConfig", "VQVAELineImageProcessor", "VQVAELineModel"]
