"""The payload models build their validators on first use (defer_build), so a CLI run builds only the few it needs.

A model that cannot be built would then fail only when a message of its type arrives: this builds
every one of them here instead.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, TypeAdapter
from pydantic.dataclasses import rebuild_dataclass

from capydeploy.protocol import envelope
from capydeploy.protocol import messages as m

MODELS = sorted(
    {
        value
        for value in [*vars(m).values(), envelope.Envelope]
        if isinstance(value, type) and issubclass(value, m.WireModel)
    },
    key=lambda model: model.__name__,
)


def test_the_base_model_defers_building() -> None:
    assert m.WireModel.model_config.get("defer_build") is True


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_payload_model_builds(model: type[BaseModel]) -> None:
    model.model_rebuild()

    assert model.__pydantic_complete__
    assert model.model_json_schema(by_alias=True)["type"] == "object"


def test_the_file_entry_dataclass_builds_on_first_use() -> None:
    # init_upload's entries are a slotted pydantic dataclass (memory), deferred like the models.
    assert m.UploadFile.__pydantic_config__.get("defer_build") is True
    rebuild_dataclass(m.UploadFile)
    assert m.UploadFile.__pydantic_complete__
    assert TypeAdapter(m.UploadFile).json_schema(by_alias=True)["type"] == "object"
