"""Dataset pipelines (``datasets.DatasetDict`` loaders), collators and the stand-in corpus generators."""

from .cifar10 import CIFAR10_CLASSES, load_cifar10
from .collators import Cifar10Collator, LineImageCollator
from .scribblelens import load_scribblelens
from .speech_collators import SpeechCollator, chunk_labels
from .wsj import KaldiDataError, WSJLoadInfo, load_wsj
