"""Request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Inputs = str | list[str] | list[list[str]]


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: str | list[str | list[str]] = Field(
        ...,
        description="a text, a list of texts, or a list of [text, text_pair] pairs",
        examples=["I love it", ["I love it", "meh"], [["The cat sat.", "A cat was sitting."]]],
    )
    top_k: int | None = Field(None, ge=1, description="return only the k best labels")
    raw_scores: bool = Field(False, description="scores are logits instead of probabilities")
    truncate: bool = Field(True, description="truncate inputs over the backbone's token limit (else 422)")

    @field_validator("inputs")
    @classmethod
    def _shape(cls, v):
        items = [v] if isinstance(v, str) else v
        if not items:
            raise ValueError("inputs must not be empty")
        kinds = {isinstance(x, str) for x in items}
        if len(kinds) > 1:
            raise ValueError("inputs must be all texts or all [text, text_pair] pairs, not a mix")
        for i, x in enumerate(items):
            if isinstance(x, list) and (len(x) != 2 or not all(isinstance(s, str) for s in x)):
                raise ValueError(f"inputs[{i}] must be a pair of two strings [text, text_pair]")
        return v

    def texts_and_pairs(self) -> tuple[list[str], list[str] | None]:
        items = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        if isinstance(items[0], list):
            return [p[0] for p in items], [p[1] for p in items]
        return list(items), None


class _TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: str | list[str] = Field(..., examples=["I love it"])
    truncate: bool = Field(True, description="truncate inputs over the backbone's token limit (else 422)")

    @field_validator("inputs")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("inputs must not be empty")
        return v

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


class TagRequest(_TextsRequest):
    aggregation: Literal["simple", "none"] = Field(
        "simple", description="simple: merged entities; none: one item per word-piece token"
    )


class EmbedRequest(_TextsRequest):
    pass


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float"] = "float"

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("input must not be empty")
        return v


class LabelScore(BaseModel):
    label: str
    score: float


class Entity(BaseModel):
    label: str
    score: float
    start: int
    end: int
    text: str


class TokenTag(BaseModel):
    token: str
    label: str
    score: float
    start: int
    end: int


class AdapterInfo(BaseModel):
    name: str
    version: str | None
    kind: str | None = None
    task: str | None = None
    labels: list[str] | None = None
    parameters: int | None = None
    bytes: int | None = Field(None, description="host memory once loaded (float32), from the weights' headers")
    stored_bytes: int | None = Field(None, description="size of the version's files in the store")
    format: str | None = None
    residency: Literal["device", "host", "store"]
    pinned: bool = False
    sha256: str | None = None
    created: float | None = None
    warnings: list[str] = []


class AdapterList(BaseModel):
    adapters: list[AdapterInfo]


class UploadResult(BaseModel):
    name: str
    version: str
    sha256: str
