"""`HubSettings`: where and when a training run pushes its model to the Hugging Face Hub (both stages' run
configs hold one as `hub`; pipelines.training_run does the pushing)."""

from __future__ import annotations

from dataclasses import dataclass, field

HUB_STRATEGIES = ("end", "checkpoint")


@dataclass
class HubSettings:
    push_to_hub: bool = field(default=False, metadata={
        "help": "push the final model with its model card to the Hugging Face Hub (needs --hub_model_id and a "
                "login: huggingface-cli login or HF_TOKEN)"})
    hub_model_id: str | None = field(default=None, metadata={"help": "the Hub repo to push to (user/name); made if missing"})
    hub_strategy: str = field(default="end", metadata={
        "help": "end: push the final model; checkpoint: also push each checkpoint to last-checkpoint/ in the "
                "repo, as transformers' Trainer does"})
    hub_private_repo: bool = field(default=False, metadata={"help": "make the repo private when it is created"})

    def __post_init__(self) -> None:
        if self.hub_strategy not in HUB_STRATEGIES:
            raise ValueError(f"hub_strategy={self.hub_strategy!r}: expected one of {list(HUB_STRATEGIES)}")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id: the Hub repo to push to (user/name)")
        if self.hub_model_id is not None and self.hub_model_id.count("/") > 1:
            raise ValueError(f"hub_model_id={self.hub_model_id!r}: expected a repo id, name or user/name")
