from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamConfig(_message.Message):
    __slots__ = ("device_id", "codec", "sample_rate", "channels", "window_seconds", "hop_seconds", "detector", "wait_for_grid_tests")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HOP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_GRID_TESTS_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    codec: str
    sample_rate: int
    channels: int
    window_seconds: float
    hop_seconds: float
    detector: bool
    wait_for_grid_tests: bool
    def __init__(self, device_id: _Optional[str] = ..., codec: _Optional[str] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., window_seconds: _Optional[float] = ..., hop_seconds: _Optional[float] = ..., detector: _Optional[bool] = ..., wait_for_grid_tests: _Optional[bool] = ...) -> None: ...

class AudioPacket(_message.Message):
    __slots__ = ("sequence", "clip_id", "payload", "end_of_clip", "label")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    END_OF_CLIP_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    clip_id: str
    payload: bytes
    end_of_clip: bool
    label: str
    def __init__(self, sequence: _Optional[int] = ..., clip_id: _Optional[str] = ..., payload: _Optional[bytes] = ..., end_of_clip: _Optional[bool] = ..., label: _Optional[str] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("config", "packet")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    packet: AudioPacket
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., packet: _Optional[_Union[AudioPacket, _Mapping]] = ...) -> None: ...

class ClassProbability(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class SceneResult(_message.Message):
    __slots__ = ("clip_id", "window_start", "window_end", "fine_label", "fine", "coarse_label", "coarse", "detector_ran", "lossy_probability", "codec_family", "codec_families", "codec_path", "model_id", "model_version", "server_latency_ms", "last_window", "clip_summary", "windows", "clip_seconds")
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    FINE_LABEL_FIELD_NUMBER: _ClassVar[int]
    FINE_FIELD_NUMBER: _ClassVar[int]
    COARSE_LABEL_FIELD_NUMBER: _ClassVar[int]
    COARSE_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_RAN_FIELD_NUMBER: _ClassVar[int]
    LOSSY_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CODEC_FAMILY_FIELD_NUMBER: _ClassVar[int]
    CODEC_FAMILIES_FIELD_NUMBER: _ClassVar[int]
    CODEC_PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CLIP_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    CLIP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    window_start: float
    window_end: float
    fine_label: str
    fine: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    coarse_label: str
    coarse: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    detector_ran: bool
    lossy_probability: float
    codec_family: str
    codec_families: _containers.RepeatedCompositeFieldContainer[ClassProbability]
    codec_path: str
    model_id: str
    model_version: str
    server_latency_ms: float
    last_window: bool
    clip_summary: bool
    windows: int
    clip_seconds: float
    def __init__(self, clip_id: _Optional[str] = ..., window_start: _Optional[float] = ..., window_end: _Optional[float] = ..., fine_label: _Optional[str] = ..., fine: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., coarse_label: _Optional[str] = ..., coarse: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., detector_ran: _Optional[bool] = ..., lossy_probability: _Optional[float] = ..., codec_family: _Optional[str] = ..., codec_families: _Optional[_Iterable[_Union[ClassProbability, _Mapping]]] = ..., codec_path: _Optional[str] = ..., model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., server_latency_ms: _Optional[float] = ..., last_window: _Optional[bool] = ..., clip_summary: _Optional[bool] = ..., windows: _Optional[int] = ..., clip_seconds: _Optional[float] = ...) -> None: ...

class ClipRequest(_message.Message):
    __slots__ = ("clip_id", "data", "codec", "sample_rate", "detector", "window_seconds", "hop_seconds")
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    HOP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    data: bytes
    codec: str
    sample_rate: int
    detector: bool
    window_seconds: float
    hop_seconds: float
    def __init__(self, clip_id: _Optional[str] = ..., data: _Optional[bytes] = ..., codec: _Optional[str] = ..., sample_rate: _Optional[int] = ..., detector: _Optional[bool] = ..., window_seconds: _Optional[float] = ..., hop_seconds: _Optional[float] = ...) -> None: ...

class ClipResult(_message.Message):
    __slots__ = ("clip_id", "windows", "summary")
    CLIP_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    clip_id: str
    windows: _containers.RepeatedCompositeFieldContainer[SceneResult]
    summary: SceneResult
    def __init__(self, clip_id: _Optional[str] = ..., windows: _Optional[_Iterable[_Union[SceneResult, _Mapping]]] = ..., summary: _Optional[_Union[SceneResult, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CodecInfo(_message.Message):
    __slots__ = ("name", "family", "available", "reason", "lossless")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: str
    available: bool
    reason: str
    lossless: bool
    def __init__(self, name: _Optional[str] = ..., family: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., lossless: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("kind", "model_id", "version", "fine_classes", "coarse_classes", "codec_conditions", "metadata_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FINE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    COARSE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CODEC_CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    model_id: str
    version: str
    fine_classes: _containers.RepeatedScalarFieldContainer[str]
    coarse_classes: _containers.RepeatedScalarFieldContainer[str]
    codec_conditions: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: str
    def __init__(self, kind: _Optional[str] = ..., model_id: _Optional[str] = ..., version: _Optional[str] = ..., fine_classes: _Optional[_Iterable[str]] = ..., coarse_classes: _Optional[_Iterable[str]] = ..., codec_conditions: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[str] = ...) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("codecs", "models", "server_version", "versions")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODECS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    codecs: _containers.RepeatedCompositeFieldContainer[CodecInfo]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    server_version: str
    versions: _containers.ScalarMap[str, str]
    def __init__(self, codecs: _Optional[_Iterable[_Union[CodecInfo, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., server_version: _Optional[str] = ..., versions: _Optional[_Mapping[str, str]] = ...) -> None: ...
