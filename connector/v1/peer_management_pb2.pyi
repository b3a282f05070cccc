from connector.v1 import catalog_protocol_pb2 as _catalog_protocol_pb2
from connector.v1 import dataset_pb2 as _dataset_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Peer(_message.Message):
    __slots__ = ("name", "participant_id", "address")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    participant_id: str
    address: str
    def __init__(self, name: _Optional[str] = ..., participant_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class GetPeerCatalogRequest(_message.Message):
    __slots__ = ("peer", "keyword")
    PEER_FIELD_NUMBER: _ClassVar[int]
    KEYWORD_FIELD_NUMBER: _ClassVar[int]
    peer: str
    keyword: str
    def __init__(self, peer: _Optional[str] = ..., keyword: _Optional[str] = ...) -> None: ...

class GetPeerCatalogResponse(_message.Message):
    __slots__ = ("peer", "catalog")
    PEER_FIELD_NUMBER: _ClassVar[int]
    CATALOG_FIELD_NUMBER: _ClassVar[int]
    peer: Peer
    catalog: _catalog_protocol_pb2.Catalog
    def __init__(self, peer: _Optional[_Union[Peer, _Mapping]] = ..., catalog: _Optional[_Union[_catalog_protocol_pb2.Catalog, _Mapping]] = ...) -> None: ...

class GetPeerDatasetRequest(_message.Message):
    __slots__ = ("peer", "dataset_id")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    peer: str
    dataset_id: str
    def __init__(self, peer: _Optional[str] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class GetPeerDatasetResponse(_message.Message):
    __slots__ = ("peer", "dataset")
    PEER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    peer: Peer
    dataset: _dataset_pb2.Dataset
    def __init__(self, peer: _Optional[_Union[Peer, _Mapping]] = ..., dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...
