"""The VQ-VAE model family as transformers classes; importing this package registers the Auto classes.

After `import vq_hf`, `AutoConfig`, `AutoModel`, `AutoModelForCTC`, `AutoImageProcessor` and `AutoFeatureExtractor`
load saved folders without `trust_remote_code`. Where vq_hf is not installed, save with
`model.save_pretrained(folder, export_remote_code=True)`: the folder then carries a flattened copy of the code
(transformers' remote code may only import sibling files) and an `auto_map`, and loads with
`trust_remote_code=True`. `register_for_auto_class` is not used: it copies only the class's own file and its
same-folder imports, and the models import the quantizer from the sibling package `vq_hf.quantization`.

Two image processors share the model type: `VQVAEImageProcessor` (CIFAR-10) and `VQVAELineImageProcessor`
(handwriting lines). `AutoImageProcessor` picks a class by the `image_processor_type` written in
`preprocessor_config.json`, searching the registered classes; a registration keyed by config class holds one
class per backend, so the line processor is registered under its own key class (`_LineImageProcessorKey`) that no
config ever instantiates. A folder without a `preprocessor_config.json` type falls back to the CIFAR processor.

transformers 5.17 without torchvision: `from transformers import AutoImageProcessor` is a dummy there; use
`transformers.models.auto.image_processing_auto.AutoImageProcessor` (or the processor class itself).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCTC

# From its module, not the top level: transformers 5.17 without torchvision exposes a dummy `AutoImageProcessor` at
# the top level that raises on any use (5.24 does not); the class in its module works with PIL-backend processors.
from transformers.models.auto.image_processing_auto import AutoImageProcessor

from .configuration_vqvae import VQVAEConfig
from .feature_extraction_vqvae import VQVAEFeatureExtractor
from .image_processing_vqvae import VQVAEImageProcessor
from .line_processing_vqvae import VQVAELineImageProcessor
from .modeling_vqvae import (
    VQVAECTCOutput,
    VQVAEDecoderOutput,
    VQVAEEncoderOutput,
    VQVAEForCTC,
    VQVAEModel,
    VQVAEOutput,
    VQVAEPreTrainedModel,
    ctc_greedy_decode,
    export_remote_code_files,
)


class _LineImageProcessorKey(VQVAEConfig):
    """Registry key for `VQVAELineImageProcessor` (see the module docstring); never instantiated."""


def _register() -> None:
    AutoConfig.register(VQVAEConfig.model_type, VQVAEConfig, exist_ok=True)
    AutoModel.register(VQVAEConfig, VQVAEModel, exist_ok=True)
    AutoModelForCTC.register(VQVAEConfig, VQVAEForCTC, exist_ok=True)
    AutoImageProcessor.register(VQVAEConfig, image_processor_classes={"pil": VQVAEImageProcessor}, exist_ok=True)
    AutoImageProcessor.register(
        _LineImageProcessorKey, image_processor_classes={"pil": VQVAELineImageProcessor}, exist_ok=True
    )
    AutoFeatureExtractor.register(VQVAEConfig, VQVAEFeatureExtractor, exist_ok=True)


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
    "VQVAEImageProcessor",
    "VQVAELineImageProcessor",
    "VQVAEFeatureExtractor",
    "ctc_greedy_decode",
    "export_remote_code_files",
]
