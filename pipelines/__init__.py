"""Inference pipelines of Tessera: prior sampling -> codebook lookup -> decoding."""

from .generation import GenerationOutput, ImageGenerationPipeline

__all__ = ["GenerationOutput", "ImageGenerationPipeline"]
