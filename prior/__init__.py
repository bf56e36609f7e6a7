"""Stage two of Tessera: priors over code indices and the index-file format they train on."""

from .gpt import GPT_PRESETS, GPTPrior, GPTPriorConfig
from .index_files import CodesDataset, CodesWriter
from .pixelcnn import PIXELCNN_PRESETS, PixelCNNPrior, PixelCNNPriorConfig

__all__ = [
    "CodesDataset", "CodesWriter", "GPTPrior", "GPTPriorConfig", "GPT_PRESETS",
    "PixelCNNPrior", "PixelCNNPriorConfig", "PIXELCNN_PRESETS",
]
