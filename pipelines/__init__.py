"""What uses both stages of Tessera: generation (prior sampling -> codebook lookup -> decoding) and
tokenizing a dataset into index files."""

from .dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset
from .generation import GenerationOutput, ImageGenerationPipeline

__all__ = ["GenerationOutput", "ImageGenerationPipeline", "TokenizeDatasetConfig", "tokenize_dataset"]
