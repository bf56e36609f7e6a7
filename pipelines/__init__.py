"""What uses both stages of Tessera: generation (prior sampling -> codebook lookup -> decoding), tokenizing a
dataset into index files, evaluation, the run machinery of both training loops, the `tessera` command and its
web page. Names load on first use (tessera_hub.lazy), so `tessera --help` answers at once."""

from tessera_hub.lazy import lazy_attributes

_EXPORTS = {
    **dict.fromkeys(["GenerationOutput", "ImageGenerationPipeline", "load_pipeline"], "generation"),
    **dict.fromkeys(["TokenizeDatasetConfig", "tokenize_dataset"], "dataset_tokenizing"),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
