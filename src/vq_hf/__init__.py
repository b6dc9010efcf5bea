"""vq-hf: robust training of vector-quantized bottlenecks (Łańcucki et al., IJCNN 2020), Hugging Face native."""

__version__ = "0.1.0"
from .quantization import VectorQuantizer, VectorQuantizerOutput, codebook_param_groups
from .models import (
    VQVAEConfig,
    VQVAEFeatureExtractor,
    VQVAEForCTC,
    VQVAEImageProcessor,
    VQVAELineImageProcessor,
    VQVAEModel,
)
