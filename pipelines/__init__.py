"""What uses both stages of Tessera: generation (prior sampling -> codebook lookup -> decoding) and
tokenizing a dataset into index files."""

from .dataset_tokenizing import TokenizeDatasetConfig, tokenize_dataset
from .generation import GenerationOutput, ImageGenerationPipeline, load_pipeline

__all__ = ["GenerationOutput", "ImageGenerationPipeline", "TokenizeDatasetConfig", "load_pipeline", "tokenize_dataset"]
