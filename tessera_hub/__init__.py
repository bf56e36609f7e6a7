"""What both stages need to keep a model in a folder, on disk or on the Hugging Face Hub: huggingface_hub's
`PyTorchModelHubMixin` with the one override Tessera needs (strict safetensors loading, only the files a model
needs fetched, one-line errors naming the file or repo). `tokenizer` and `prior` never import each other, so the
one copy of this lives here, below both; `pipelines` uses it for the pipeline folder too."""

from .folders import (
    CONFIG_NAME, WEIGHTS_NAME, load_state_dict_strict, load_weights_strict, one_line, read_json_object,
    resolve_folder,
)
from .configs import check_config_types, config_from_dict
from .saved_model import JSONConfig, SavedModel

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "JSONConfig", "SavedModel", "check_config_types", "config_from_dict",
           "load_state_dict_strict", "load_weights_strict", "one_line", "read_json_object", "resolve_folder"]
