"""vq-hf: robust training of vector-quantized bottlenecks (Łańcucki et al., IJCNN 2020), Hugging Face native."""

__version__ = "0.1.0"
