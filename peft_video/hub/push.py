"""Upload an adapter to the Hub without losing its model card.

`PeftModel.push_to_hub` is transformers' `PushToHubMixin.push_to_hub`, which (transformers 5.x) runs `save_pretrained`
into a temporary folder and then overwrites that folder's README.md with the card already on the Hub or, for a new
repository, with transformers' generic card (`library_name: transformers`, "[More Information Needed]" everywhere).
The card `save_pretrained` just wrote (ours and peft's) never reaches the Hub. `push_adapter_to_hub` does the same job
in the other order: the Hub's README first, then `save_pretrained` (and `write_model_card` with the caller's facts),
whose card writing merges into it, then upload.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from .model_card import README_NAME, write_model_card


def push_adapter_to_hub(
    model: Any,
    repo_id: str,
    *,
    card: Mapping[str, Any] | None = None,
    processor: Any = None,
    files: Sequence[str | os.PathLike] = (),
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api: Any = None,
    **save_kwargs: Any,
) -> Any:
    """Save `model` (a peft_video PeftModel) with `save_pretrained`, its `processor` (a `VideoTextProcessor`) beside it
    and `files` (e.g. the picture `card["gallery"]` names) next to them, and upload the folder to `repo_id`; returns
    the commit info.

    A README already on the Hub is downloaded first and merged by the card writer (its metadata and text are kept,
    our block replaced). `card` holds `write_model_card`'s keyword arguments (training setup, test results, license,
    ...) for the uploaded card; `adapter_id` defaults to `repo_id`. `save_kwargs` go to `save_pretrained`. `api` is an
    `huggingface_hub.HfApi` (injectable for tests); by default one is created with `token`.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError

    api = api if api is not None else HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, token=token).repo_id
    with tempfile.TemporaryDirectory() as folder:
        try:
            remote_card = api.hf_hub_download(repo_id, README_NAME, revision=revision, token=token)
        except EntryNotFoundError:
            remote_card = None
        if remote_card is not None:
            shutil.copyfile(remote_card, os.path.join(folder, README_NAME))
        model.save_pretrained(folder, **save_kwargs)
        if processor is not None:
            processor.save_pretrained(folder)
        for file in files:
            shutil.copyfile(file, os.path.join(folder, os.path.basename(file)))
        write_model_card(folder, model.active_peft_config, **{"adapter_id": repo_id, **(card or {})})
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload peft_video adapter",
            token=token,
            revision=revision,
            create_pr=create_pr,
        )
