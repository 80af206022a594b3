"""Request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Inputs = str | list[str] | list[list[str]]


class ClassifyParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top_k: int | None = Field(None, ge=1, description="return only the k best labels")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="scores: softmax, sigmoid, or none (the logits); default: the adapter's task"
    )


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
    parameters: ClassifyParameters | None = Field(
        None, description="Hugging Face Inference conventions (what `InferenceClient.text_classification` sends)"
    )

    def options(self) -> tuple[int | None, str | None]:
        """(top_k, function_to_apply) from our fields and the HF `parameters`; None means the adapter's task."""
        p = self.parameters or ClassifyParameters()
        if self.top_k is not None and p.top_k is not None and self.top_k != p.top_k:
            raise ValueError("top_k and parameters.top_k disagree: send one of them")
        if self.raw_scores and p.function_to_apply not in (None, "none"):
            raise ValueError("raw_scores and parameters.function_to_apply disagree: send one of them")
        return self.top_k or p.top_k, "none" if self.raw_scores else p.function_to_apply

    @model_validator(mode="after")
    def _consistent(self):
        self.options()
        return self

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


Aggregation = Literal["none", "simple", "first", "average", "max"]


class TagParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    aggregation_strategy: Aggregation | None = Field(None, description="as transformers' token-classification")
    ignore_labels: list[str] | None = Field(None, description='labels left out of the answer (default ["O"])')
    stride: int | None = Field(None, description="not supported: long inputs are truncated or refused (truncate)")

    @field_validator("stride")
    @classmethod
    def _no_stride(cls, v):
        if v is not None:
            raise ValueError("stride is not supported: inputs over the token limit are truncated (or refused)")
        return v


class TagRequest(_TextsRequest):
    aggregation: Aggregation | None = Field(
        None,
        description="none: one item per word piece; simple (default): B-/I- spans merged; first/average/max: "
        "word pieces merged into words (first piece's label, average scores, best piece) before spans merge",
    )
    ignore_labels: list[str] | None = Field(
        None, description='labels left out (default ["O"], and none left out for aggregation "none")'
    )
    parameters: TagParameters | None = Field(
        None, description="Hugging Face Inference conventions (what `InferenceClient.token_classification` sends)"
    )

    def options(self) -> tuple[str, list[str]]:
        p = self.parameters or TagParameters()
        if self.aggregation and p.aggregation_strategy and self.aggregation != p.aggregation_strategy:
            raise ValueError("aggregation and parameters.aggregation_strategy disagree: send one of them")
        strategy = self.aggregation or p.aggregation_strategy or "simple"
        ignore = p.ignore_labels if p.ignore_labels is not None else self.ignore_labels
        if ignore is None:
            # Our own "none" keeps every token; the HF convention (parameters sent) leaves out "O" as transformers does.
            ignore = [] if strategy == "none" and self.parameters is None else ["O"]
        return strategy, ignore

    @model_validator(mode="after")
    def _consistent(self):
        self.options()
        return self


class EmbedRequest(_TextsRequest):
    # What InferenceClient.feature_extraction / TEI clients send at the top level.
    normalize: bool | None = Field(None, description="L2-normalize (default: as the backbone's sentence config)")
    prompt_name: None = Field(None, description="not supported: send the prompt as part of the text")
    truncation_direction: Literal["right", "Right"] | None = Field(None, description="only right truncation")


class OpenAIEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | list[str] = Field(..., examples=["I love it"])
    model: str | None = Field(None, description="ignored beyond the echo: the backbone answers")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: the little-endian float32 bytes, base64-encoded (the OpenAI SDK's default)"
    )
    dimensions: int | None = Field(None, ge=1, description="only the backbone's own dimension is supported")
    user: str | None = Field(None, description="ignored")

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("input must not be empty")
        return v


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(..., description="floats, or a base64 string for encoding_format=base64")


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[OpenAIEmbedding]
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


class LabelScore(BaseModel):
    label: str
    score: float


class Entity(BaseModel):
    label: str
    score: float
    start: int
    end: int
    text: str = Field(..., description="the input's characters start:end")
    entity_group: str = Field(..., description="the label again, as Hugging Face clients read it")
    word: str = Field(..., description="the word pieces joined by the tokenizer (as transformers reports it)")


class TokenTag(BaseModel):
    token: str
    label: str
    score: float
    start: int
    end: int
    entity: str = Field(..., description="the label again, as Hugging Face clients read it")
    word: str = Field(..., description="the token again, as Hugging Face clients read it")
    index: int = Field(..., description="the token's position in the tokenized input")


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
