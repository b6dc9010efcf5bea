"""The VQ-VAE model families as transformers classes; importing this package registers the Auto classes.

One config/model pair per family, each with its own model type (transformers' folder layout):

==================  ===================  ========================================  ==================================
model type          config               models                                    processor
==================  ===================  ========================================  ==================================
``vqvae_image``     VQVAEImageConfig     VQVAEImageModel                           VQVAEImageProcessor
``vqvae_line``      VQVAELineConfig      VQVAELineModel (PixelCNN decoder)         VQVAELineImageProcessor
``vqvae_speech``    VQVAESpeechConfig    VQVAESpeechModel, VQVAESpeechForCTC       VQVAEFeatureExtractor
==================  ===================  ========================================  ==================================

After `import vq_hf`, `AutoConfig`, `AutoModel`, `AutoModelForCTC`, `AutoImageProcessor` and `AutoFeatureExtractor`
load saved folders without `trust_remote_code`, and so do the names users know: `VQVAEConfig`, `VQVAEModel`
and `VQVAEForCTC` construct or load the family's class (see :mod:`.configuration_vqvae`, :mod:`.modeling_vqvae`).
Folders saved by vq-hf 0.1.0 (one flat config, model type ``vq_hf_vqvae``) are converted on load.

`model.save_pretrained(folder, export_remote_code=True)` writes the family's configuration and modeling files with an
`auto_map` (`register_for_auto_class`); the folder then loads with `trust_remote_code=True` without importing
vq_hf first (the files import the installed package).

transformers 5.17 without torchvision: `from transformers import AutoImageProcessor` is a dummy there; use
`transformers.models.auto.image_processing_auto.AutoImageProcessor` (or the processor class itself).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCTC

# From its module, not the top level: transformers 5.17 without torchvision exposes a dummy `AutoImageProcessor` at
# the top level that raises on any use (5.24 does not); the class in its module works with PIL-backend processors.
from transformers.models.auto.image_processing_auto import AutoImageProcessor

from .configuration_vqvae import VQVAEConfig
from .modeling_vqvae import (
    VQVAECTCOutput,
    VQVAEDecoderOutput,
    VQVAEEncoderOutput,
    VQVAEForCTC,
    VQVAEModel,
    VQVAEOutput,
    VQVAEPreTrainedModel,
)
from .vqvae_image import VQVAEImageConfig, VQVAEImageModel, VQVAEImageProcessor
from .vqvae_line import VQVAELineConfig, VQVAELineImageProcessor, VQVAELineModel
from .vqvae_speech import VQVAEFeatureExtractor, VQVAESpeechConfig, VQVAESpeechForCTC, VQVAESpeechModel


def _register() -> None:
    # 0.1.0 folders: their config converts to a family config, which the registrations below then map
    AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
    for config, model in ((VQVAEImageConfig, VQVAEImageModel), (VQVAELineConfig, VQVAELineModel),
                          (VQVAESpeechConfig, VQVAESpeechModel)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModel.register(config, model, exist_ok=True)
    AutoModelForCTC.register(VQVAESpeechConfig, VQVAESpeechForCTC, exist_ok=True)
    AutoImageProcessor.register(VQVAEImageConfig, image_processor_classes={"pil": VQVAEImageProcessor}, exist_ok=True)
    AutoImageProcessor.register(VQVAELineConfig, image_processor_classes={"pil": VQVAELineImageProcessor},
                                exist_ok=True)
    AutoFeatureExtractor.register(VQVAESpeechConfig, VQVAEFeatureExtractor, exist_ok=True)


_register()

__all__ = [
    "VQVAEConfig",
    "VQVAEModel",
    "VQVAEForCTC",
    "VQVAEPreTrainedModel",
    "VQVAEOutput",
    "VQVAECTCOutput",
    "VQVAEEncoderOutput",
    "VQVAEDecoderOutput",
    "VQVAEImageConfig",
    "VQVAEImageModel",
    "VQVAEImageProcessor",
    "VQVAELineConfig",
    "VQVAELineModel",
    "VQVAELineImageProcessor",
    "VQVAESpeechConfig",
    "VQVAESpeechModel",
    "VQVAESpeechForCTC",
    "VQVAEFeatureExtractor",
]
