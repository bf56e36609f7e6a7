"""Stage two of Tessera: priors over code indices and the index-file format they train on.

`CodesDataset` reads the folders written by scripts/tokenize_dataset.py (see prior.index_files).
The GPT and PixelCNN priors arrive with the issue "Stage two".
"""

from .index_files import CodesDataset, CodesWriter

__all__ = ["CodesDataset", "CodesWriter"]
