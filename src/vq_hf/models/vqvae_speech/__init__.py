"""The speech family: encoder + CTC head (model type ``"vqvae_speech"``)."""

from .configuration_vqvae_speech import VQVAESpeechConfig
from .feature_extraction_vqvae_speech import VQVAEFeatureExtractor
from .modeling_vqvae_speech import VQVAESpeechForCTC, VQVAESpeechModel

__all__ = ["VQVAEFeatureExtractor", "VQVAESpeechConfig", "VQVAESpeechForCTC", "VQVAESpeechModel"]
