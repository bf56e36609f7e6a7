"""What both stages need to keep a model in a folder, on disk or on the Hugging Face Hub: huggingface_hub's
`PyTorchModelHubMixin` with the one override Tessera needs (strict safetensors loading, only the files a model
needs fetched, one-line errors naming the file or repo) and Tessera's model cards. `tokenizer` and `prior` never
import each other, so the one copy of this lives here, below both; `pipelines` uses it for the pipeline folder
too. Names load on first use (tessera_hub.lazy)."""

from .lazy import lazy_attributes

_EXPORTS = {
    **dict.fromkeys(["CONFIG_NAME", "WEIGHTS_NAME", "load_state_dict_strict", "load_weights_strict", "one_line",
                     "resolve_folder"], "folders"),
    **dict.fromkeys(["check_config_types", "config_from_dict", "read_json_object"], "configs"),
    **dict.fromkeys(["read_tensors", "read_torch_checkpoint"], "foreign_files"),
    "HubSettings": "hub_settings",
    **dict.fromkeys(["JSONConfig", "SavedModel"], "saved_model"),
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_attributes(__name__, _EXPORTS)
