"""The base of every kind's params (`Params`) and the markers of fields that name files in
the artifact store (`refs.py`) with their path syntax (`paths.py`): the part of a kind's
contract the controller reads, light enough for the API and the SDK (pydantic only)."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode
from pydantic_core import core_schema, to_jsonable_python

from kubetask.params.paths import OutsideTheStore, store_parts
from kubetask.params.refs import is_path_field

__all__ = ["DefaultsSchema", "Params"]


class DefaultsSchema(GenerateJsonSchema):
    """A JSON schema whose `default`s are the values validation fills in, those made by a
    `default_factory` too (pydantic leaves them out), so a schema's defaults are what a
    request without the field gets."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return to_jsonable_python(factory())  # type: ignore[call-arg]
        return super().get_default_value(schema)


class Params(BaseModel):
    """Base of every kind's params: unknown fields are errors, every field has a default,
    and every field that names files (`artifact_path`, `output_ref`) holds paths inside the
    artifact store only (kubetask/params/paths.py). Its JSON schema shows every default as
    validation fills it in (`DefaultsSchema`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool | None = None,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = DefaultsSchema,
        mode: JsonSchemaMode = "validation",
        *,
        union_format: Literal["any_of", "primitive_type_array"] = "any_of",
    ) -> dict[str, Any]:
        return super().model_json_schema(
            by_alias, ref_template, schema_generator, mode, union_format=union_format
        )

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """`"epochs": true` is a mistake, not 1 (pydantic's lax mode would take it)."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _numeric(field.annotation):
            raise ValueError("a number, not true or false")
        return value

    @field_validator("*")
    @classmethod
    def _paths_inside_the_store(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not is_path_field(field):
            return value
        items = value if isinstance(value, list) else [value]
        for position, item in enumerate(items):
            if not isinstance(item, str):
                continue
            try:
                store_parts(item)
            except OutsideTheStore as exc:
                where = f"item {position}: " if isinstance(value, list) else ""
                raise ValueError(f"{where}{exc}") from None
        return value


def _numeric(annotation: Any) -> bool:
    """Whether a field holds a number (int or float, or either or None), never a bool."""
    if annotation in (int, float):
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = {arg for arg in get_args(annotation) if arg is not type(None)}
        return bool(kinds) and kinds <= {int, float}
    return False
