"""Request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..store import NAME_PATTERN


def _integral(v):
    """JSON Schema's integer includes 5.0; strict pydantic does not: accept integral floats, nothing else."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


Texts = Annotated[list[str], Field(min_length=1)]
Pair = Annotated[list[str], Field(min_length=2, max_length=2, description="[text, text_pair]")]
Pairs = Annotated[list[Pair], Field(min_length=1)]


def _inputs_message(v, pairs: bool):
    """Clear messages for the shapes the schema (minItems, pairs of two) refuses, before pydantic's union
    errors (one per branch) would: runs as a before-validator, so it never accepts what the schema refuses."""
    if isinstance(v, list):
        if not v:
            raise ValueError("must not be empty")
        if not pairs and any(not isinstance(x, str) for x in v):
            raise ValueError("must be a text or a list of texts")
        if pairs and len({isinstance(x, str) for x in v}) > 1:
            raise ValueError("must be all texts or all [text, text_pair] pairs, not a mix")
        for i, x in enumerate(v):
            if pairs and isinstance(x, list) and (len(x) != 2 or not all(isinstance(t, str) for t in x)):
                raise ValueError(f"item {i} must be a pair of two strings [text, text_pair]")
    return v


NAME_DOC = "adapter name: 1-128 characters [a-z0-9._-], starting with a letter or digit, without '..'"
AdapterName = Annotated[str, Path(description=NAME_DOC, pattern=NAME_PATTERN, max_length=128)]
AdapterQuery = Annotated[str, Query(description=NAME_DOC, pattern=NAME_PATTERN, max_length=128)]
# Request bodies are strict: 0 is not false and "1" is not 1, so what the schema says is what is accepted.
STRICT = ConfigDict(extra="forbid", strict=True)


class ClassifyParameters(BaseModel):
    model_config = STRICT
    top_k: int | None = Field(None, ge=1, description="return only the k best labels")
    _top_k_integral = field_validator("top_k", mode="before")(classmethod(lambda cls, v: _integral(v)))
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="scores: softmax, sigmoid, or none (the logits); default: the adapter's task"
    )


class ClassifyRequest(BaseModel):
    model_config = STRICT
    inputs: str | Texts | Pairs = Field(
        ...,
        description="a text, a list of texts, or a list of [text, text_pair] pairs",
        examples=["I love it", ["I love it", "meh"], [["The cat sat.", "A cat was sitting."]]],
    )
    top_k: int | None = Field(None, ge=1, description="return only the k best labels")
    _top_k_integral = field_validator("top_k", mode="before")(classmethod(lambda cls, v: _integral(v)))
    raw_scores: bool = Field(False, description="scores are logits instead of probabilities")
    truncate: bool = Field(True, description="truncate inputs over the backbone's token limit (else 422)")
    parameters: ClassifyParameters | None = Field(
        None, description="Hugging Face Inference conventions (what `InferenceClient.text_classification` sends)"
    )

    def options(self) -> tuple[int | None, str | None]:
        """(top_k, function_to_apply); None means the adapter's task. The HF `parameters` win over our fields."""
        p = self.parameters or ClassifyParameters()
        function = p.function_to_apply or ("none" if self.raw_scores else None)
        return p.top_k or self.top_k, function

    @field_validator("inputs", mode="before")
    @classmethod
    def _shape(cls, v):
        return _inputs_message(v, pairs=True)

    def texts_and_pairs(self) -> tuple[list[str], list[str] | None]:
        items = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        if isinstance(items[0], list):
            return [p[0] for p in items], [p[1] for p in items]
        return list(items), None


class _TextsRequest(BaseModel):
    model_config = STRICT
    inputs: str | Texts = Field(..., examples=["I love it"])
    truncate: bool = Field(True, description="truncate inputs over the backbone's token limit (else 422)")

    @field_validator("inputs", mode="before")
    @classmethod
    def _shape(cls, v):
        return _inputs_message(v, pairs=False)

    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)


Aggregation = Literal["none", "simple", "first", "average", "max"]


class TagParameters(BaseModel):
    model_config = STRICT
    aggregation_strategy: Aggregation | None = Field(None, description="as transformers' token-classification")
    ignore_labels: list[str] | None = Field(None, description='labels left out of the answer (default ["O"])')
    stride: None = Field(None, description="not supported: long inputs are truncated or refused (truncate)")

    @field_validator("stride", mode="before")
    @classmethod
    def _no_stride(cls, v):
        if v is not None:
            raise ValueError("stride is not supported: inputs over the token limit are truncated (or refused)")
        return v


class TagRequest(_TextsRequest):
    aggregation: Aggregation | None = Field(
        None,
        description="none: one item per word piece; simple: B-/I- spans of tokens merged; first (default), "
        "average, max: word pieces merged into words (first piece's label, average scores, best piece) before "
        "spans merge",
    )
    ignore_labels: list[str] | None = Field(
        None, description='labels left out (default ["O"], and none left out for aggregation "none")'
    )
    parameters: TagParameters | None = Field(
        None, description="Hugging Face Inference conventions (what `InferenceClient.token_classification` sends)"
    )

    def options(self) -> tuple[str, list[str]]:
        """(strategy, labels to leave out). The HF `parameters` win over our fields."""
        p = self.parameters or TagParameters()
        # Default "first": a word takes its first piece's label, as this route always did.
        strategy = p.aggregation_strategy or self.aggregation or "first"
        ignore = p.ignore_labels if p.ignore_labels is not None else self.ignore_labels
        if ignore is None:
            # Our own "none" keeps every token; the HF convention (parameters sent) leaves out "O" as transformers does.
            ignore = [] if strategy == "none" and self.parameters is None else ["O"]
        return strategy, ignore


class EmbedRequest(_TextsRequest):
    # What InferenceClient.feature_extraction / TEI clients send at the top level.
    normalize: bool | None = Field(None, description="L2-normalize (default: as the backbone's sentence config)")
    prompt_name: None = Field(None, description="not supported: send the prompt as part of the text")
    truncation_direction: Literal["right", "Right"] | None = Field(None, description="only right truncation")


class OpenAIEmbeddingRequest(BaseModel):
    model_config = STRICT
    input: str | Texts = Field(..., examples=["I love it"])
    model: str | None = Field(None, description="ignored beyond the echo: the backbone answers")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: the little-endian float32 bytes, base64-encoded (the OpenAI SDK's default)"
    )
    dimensions: None = Field(None, description="not supported: the embeddings have the backbone's own size")
    user: str | None = Field(None, description="ignored")

    @field_validator("input", mode="before")
    @classmethod
    def _shape(cls, v):
        return _inputs_message(v, pairs=False)

    @field_validator("dimensions", mode="before")
    @classmethod
    def _no_dimensions(cls, v):
        if v is not None:
            raise ValueError("dimensions is not supported: the embeddings have the backbone's own size; leave it out")
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


class QAInput(BaseModel):
    model_config = STRICT
    question: str = Field(..., examples=["Where is the Eiffel Tower?"])
    context: str = Field(..., examples=["The Eiffel Tower is a wrought-iron lattice tower in Paris."])


class AnswerRequest(BaseModel):
    model_config = STRICT
    inputs: QAInput | Annotated[list[QAInput], Field(min_length=1)] = Field(
        ..., description="a {question, context} object, or a list of them (one answer per element)"
    )
    top_k: int = Field(1, ge=1, le=50, description="1: one answer object per input; more: a list, best first")
    max_answer_len: int = Field(15, ge=1, le=512, description="longest answer, in tokens")
    doc_stride: int | None = Field(
        None,
        ge=0,
        description="overlap in tokens between windows of a context longer than the backbone "
        "(default: the pipeline's min(max_seq_len // 2, 128))",
    )
    # JSON integers may be written 24.0 (the schema says integer): accepted as in the other routes
    _integral = field_validator("top_k", "max_answer_len", "doc_stride", mode="before")(
        classmethod(lambda cls, v: _integral(v))
    )

    @field_validator("inputs")
    @classmethod
    def _non_empty(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("inputs must not be empty")
        return v

    def items(self) -> list[QAInput]:
        return self.inputs if isinstance(self.inputs, list) else [self.inputs]


class Answer(BaseModel):
    score: float
    start: int = Field(..., description="character offset of the answer in the context")
    end: int = Field(..., description="character offset just past the answer (answer == context[start:end])")
    answer: str


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
    members: list[str] | None = None  # ensembles
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


class InferTensor(BaseModel):
    """One input tensor of a KServe v2 inference request: text as BYTES."""

    name: Literal["text", "text_pair"]
    shape: list[Annotated[int, Field(ge=0)]] = Field(..., min_length=1, max_length=2)
    datatype: Literal["BYTES"]
    parameters: dict | None = None
    data: list[str] | list[list[str]] | None = Field(None, description="or binary: parameters.binary_data_size")


class InferOutput(BaseModel):
    name: Literal["labels", "scores", "entities"]
    parameters: dict | None = None


class InferRequest(BaseModel):
    id: str | None = None
    parameters: dict | None = Field(None, description="top_k, function_to_apply (as /classify), binary_data_output")
    inputs: list[InferTensor] = Field(..., min_length=1, max_length=2)
    outputs: list[InferOutput] | None = None

    @field_validator("inputs")
    @classmethod
    def _text_first(cls, v):
        names = [t.name for t in v]
        if "text" not in names or len(set(names)) != len(names):
            raise ValueError('send one "text" input, and optionally one "text_pair"')
        return v
