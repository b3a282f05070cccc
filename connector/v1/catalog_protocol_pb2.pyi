from connector.v1 import dataset_pb2 as _dataset_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Catalog(_message.Message):
    __slots__ = ("id", "participant_id", "node_name", "endpoint_url", "datasets")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    id: str
    participant_id: str
    node_name: str
    endpoint_url: str
    datasets: _containers.RepeatedCompositeFieldContainer[_dataset_pb2.Dataset]
    def __init__(self, id: _Optional[str] = ..., participant_id: _Optional[str] = ..., node_name: _Optional[str] = ..., endpoint_url: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_dataset_pb2.Dataset, _Mapping]]] = ...) -> None: ...

class GetCatalogRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "keyword")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    keyword: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., keyword: _Optional[str] = ...) -> None: ...

class GetCatalogResponse(_message.Message):
    __slots__ = ("catalog", "next_page_token")
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    catalog: Catalog
    next_page_token: str
    def __init__(self, catalog: _Optional[_Union[Catalog, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCatalogDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class GetCatalogDatasetResponse(_message.Message):
    __slots__ = ("dataset", "participant_id", "endpoint_url")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_URL_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    participant_id: str
    endpoint_url: str
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ..., participant_id: _Optional[str] = ..., endpoint_url: _Optional[str] = ...) -> None: ...
