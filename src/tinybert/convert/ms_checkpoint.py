"""Read MindSpore checkpoints (`.ckpt`) without MindSpore.

A `.ckpt` from `mindspore.save_checkpoint` is a run of serialized `Checkpoint` protobuf messages
(mindspore/ccsrc/utils/checkpoint.proto), one per parameter, or per 512 MiB chunk of a large one.
Protobuf merges concatenated messages, so the file parses as one message whose repeated `value`
holds every entry in order:

    message Checkpoint {
      message Value {
        required string tag = 1;
        oneof value { TensorProto tensor = 2; MapTensorProto maptensor = 3; }
      }
      repeated Value value = 1;
    }
    message TensorProto {
      repeated int64 dims = 1; required string tensor_type = 2; required bytes tensor_content = 3;
    }
    message MapTensorProto { repeated TensorProto tensor = 1; }

What MindSpore's own loader does, this one does too: consecutive entries with the same tag are
chunks of one tensor (their bytes are joined); dims [] or [0] is a scalar; a trailer of b"crc_num"
plus 10 big-endian bytes (crc32 of everything before it, MindSpore >= 2.3) is checked and dropped;
tensor_type "str" is a string from save_checkpoint's append_dict, stored as UTF-32.
The message class is built at run time from a FileDescriptorProto: no protoc, no generated code.
A `.safetensors` file from save_checkpoint(format="safetensors") is read as well.
"""

from __future__ import annotations

import binascii
import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import (  # type: ignore[import-untyped]  # protobuf ships no stubs
    descriptor_pb2,
    descriptor_pool,
    message,
    message_factory,
)

from tinybert.errors import UserError

# tensor_type -> numpy dtype (little-endian, as MindSpore writes on every platform it runs on).
NUMPY_TYPES: dict[str, str] = {
    "Float16": "<f2",
    "Float32": "<f4",
    "Float64": "<f8",
    "Int8": "i1",
    "UInt8": "u1",
    "Int16": "<i2",
    "UInt16": "<u2",
    "Int32": "<i4",
    "UInt32": "<u4",
    "Int64": "<i8",
    "UInt64": "<u8",
    "Bool": "?",
}
# Not numpy types: bfloat16 (read as float32, exactly), strings, the random-op seed state.
OTHER_TYPES = ("BFloat16", "str", "random_op")
_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10
_HINT = (
    "expected a .ckpt written by mindspore.save_checkpoint (an encrypted one, saved with "
    "enc_key, must be decrypted with MindSpore first)"
)


@dataclass(frozen=True)
class MsTensor:
    """One checkpoint entry: its tag, MindSpore's tensor_type and the value.

    `array` has the entry's shape (() for a scalar); BFloat16 comes back as float32, "str" as a
    0-d numpy string, "random_op" as raw uint8 bytes.
    """

    tag: str
    ms_type: str
    array: np.ndarray


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Every entry of a MindSpore checkpoint as {tag: numpy array}, in file order."""
    return {tag: t.array for tag, t in read_entries(path).items()}


def read_entries(path: str | Path) -> dict[str, MsTensor]:
    """Every entry of a MindSpore checkpoint (.ckpt, or MindSpore's .safetensors), in file order.

    Raises a one-line UserError naming the file for a missing, empty, truncated or corrupt file,
    one that is not a checkpoint, an unknown tensor_type, or a tag that occurs twice.
    """
    path = Path(path)
    data = _read_bytes(path)
    if _is_safetensors(data):
        return _read_safetensors(path)
    if data[:1] != b"\x0a":  # every Checkpoint record starts with field 1 (`value`), wire type 2
        raise UserError(f"{path}: not a MindSpore checkpoint; {_HINT}")
    parsed = _parse(_strip_crc(data, path), path)
    del data  # the parsed message holds its own copy: keep one, not two, in memory
    return _assemble(parsed.value, path)


# ---------------------------------------------------------------------------------------------
# protobuf


@functools.cache
def _checkpoint_class() -> Any:
    """The `Checkpoint` message class, from a descriptor built here (fields as in MindSpore's
    checkpoint.proto, all optional: a missing one is reported by us, not by protobuf)."""
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tinybert_mindspore_checkpoint.proto", package="tinybert_ms", syntax="proto2"
    )

    def add(
        msg: Any, name: str, number: int, kind: int, repeated: bool = False, ref: str = ""
    ) -> None:
        label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
        msg.field.add(name=name, number=number, type=kind, label=label, type_name=ref or None)

    tensor = proto.message_type.add(name="TensorProto")
    add(tensor, "dims", 1, F.TYPE_INT64, repeated=True)
    add(tensor, "tensor_type", 2, F.TYPE_STRING)
    add(tensor, "tensor_content", 3, F.TYPE_BYTES)
    map_tensor = proto.message_type.add(name="MapTensorProto")
    add(map_tensor, "tensor", 1, F.TYPE_MESSAGE, repeated=True, ref=".tinybert_ms.TensorProto")
    checkpoint = proto.message_type.add(name="Checkpoint")
    value = checkpoint.nested_type.add(name="Value")
    add(value, "tag", 1, F.TYPE_STRING)
    add(value, "tensor", 2, F.TYPE_MESSAGE, ref=".tinybert_ms.TensorProto")
    add(value, "maptensor", 3, F.TYPE_MESSAGE, ref=".tinybert_ms.MapTensorProto")
    add(checkpoint, "value", 1, F.TYPE_MESSAGE, repeated=True, ref=".tinybert_ms.Checkpoint.Value")
    pool = descriptor_pool.DescriptorPool()  # private: never clashes with another Checkpoint
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tinybert_ms.Checkpoint"))


def _parse(data: bytes, path: Path) -> Any:
    parsed = _checkpoint_class()()
    try:
        parsed.ParseFromString(data)
    except (message.DecodeError, ValueError, RuntimeError) as e:
        raise UserError(
            f"{path}: truncated or corrupt MindSpore checkpoint ({e}); {_HINT}"
        ) from None
    if not parsed.value:
        raise UserError(f"{path}: not a MindSpore checkpoint (no entries); {_HINT}")
    return parsed


# ---------------------------------------------------------------------------------------------
# entries


def _assemble(values: Any, path: Path) -> dict[str, MsTensor]:
    """Join the chunks of each tag (consecutive entries) and decode them, in file order."""
    out: dict[str, MsTensor] = {}
    i = 0
    while i < len(values):
        first = values[i]
        _check_value(first, i, path)
        j = i + 1
        while j < len(values) and values[j].tag == first.tag:
            _check_chunk(values[j], first, path)
            j += 1
        if first.tag in out:
            raise UserError(
                f"{path}: entry '{first.tag}' occurs twice (again at entry {i}); the file is "
                "corrupt or was concatenated from two checkpoints"
            )
        content = b"".join(v.tensor.tensor_content for v in values[i:j])
        tensor = first.tensor
        out[first.tag] = _decode(first.tag, list(tensor.dims), tensor.tensor_type, content, path)
        i = j
    return out


def _check_value(value: Any, index: int, path: Path) -> None:
    if not value.tag:
        raise UserError(f"{path}: entry {index} has no tag; the file is corrupt. {_HINT}")
    name = f"entry {index} ('{value.tag}')"
    if value.HasField("maptensor"):
        raise UserError(
            f"{path}: {name} is a MapTensor (a hash-table embedding); BERT checkpoints have none "
            "and converting one is not supported"
        )
    if not value.HasField("tensor") or not value.tensor.tensor_type:
        raise UserError(f"{path}: {name} has no tensor; the file is corrupt. {_HINT}")


def _check_chunk(chunk: Any, first: Any, path: Path) -> None:
    """A continuation chunk repeats the first chunk's dims and type (MindSpore writes both)."""
    same = chunk.HasField("tensor") and (
        list(chunk.tensor.dims) == list(first.tensor.dims)
        and chunk.tensor.tensor_type == first.tensor.tensor_type
    )
    if not same:
        raise UserError(
            f"{path}: entry '{first.tag}' is split into chunks of different shape or type; "
            "the file is corrupt"
        )


def _decode(tag: str, dims: list[int], ms_type: str, content: bytes, path: Path) -> MsTensor:
    """One entry's bytes -> MsTensor with shape `dims` ([] and [0] both mean a scalar)."""
    if any(d < 0 for d in dims):
        raise UserError(f"{path}: entry '{tag}' has negative dims {dims}; the file is corrupt")
    shape = () if dims in ([], [0]) else tuple(dims)
    if ms_type == "str":
        text = content.decode("utf-32-le", errors="replace").rstrip("\x00")
        return MsTensor(tag, ms_type, np.array(text))
    if ms_type == "random_op":
        return MsTensor(tag, ms_type, np.frombuffer(content, np.uint8).copy())
    if ms_type not in NUMPY_TYPES and ms_type != "BFloat16":
        known = ", ".join([*NUMPY_TYPES, *OTHER_TYPES])
        raise UserError(
            f"{path}: entry '{tag}' has tensor_type '{ms_type}', which this reader does not know "
            f"(known: {known})"
        )
    dtype = np.dtype("<u2" if ms_type == "BFloat16" else NUMPY_TYPES[ms_type])
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(content) != count * dtype.itemsize:
        raise UserError(
            f"{path}: entry '{tag}' holds {len(content)} bytes but shape {list(shape)} of "
            f"{ms_type} needs {count * dtype.itemsize}; the file is truncated or corrupt"
        )
    array = np.frombuffer(bytearray(content), dtype).reshape(shape)
    if ms_type == "BFloat16":  # the high half of a float32: widening is exact
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return MsTensor(tag, ms_type, array)


# ---------------------------------------------------------------------------------------------
# files


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the checkpoint ({e.strerror})") from None
    if not data:
        raise UserError(f"{path}: the checkpoint file is empty")
    return data


def _strip_crc(data: bytes, path: Path) -> bytes:
    """Drop (after checking) the CRC trailer MindSpore >= 2.3 may append."""
    if len(data) < _CRC_TRAILER or data[-_CRC_TRAILER:-10] != _CRC_MARK:
        return data
    body, expected = data[:-_CRC_TRAILER], int.from_bytes(data[-10:], "big")
    if binascii.crc32(body) != expected:
        raise UserError(
            f"{path}: CRC check failed (the file's trailer says {expected}, its content gives "
            f"{binascii.crc32(body)}); the file is damaged: copy it again"
        )
    return body


def _is_safetensors(data: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    if len(data) < 10:
        return False
    (size,) = struct.unpack("<Q", data[:8])
    return 0 < size <= len(data) - 8 and data[8:9] == b"{"


def _read_safetensors(path: Path) -> dict[str, MsTensor]:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except Exception as e:  # the Rust side raises its own error types
        raise UserError(f"{path}: cannot read this safetensors checkpoint ({e})") from None
    names = {np.dtype(v): k for k, v in NUMPY_TYPES.items()}
    return {k: MsTensor(k, names.get(v.dtype, str(v.dtype)), v) for k, v in tensors.items()}
