# Copyright 2026 spatial_mllm_ros maintainers
# SPDX-License-Identifier: Apache-2.0
"""The storage files of a rosbag2 recording, read as robots leave them, without a ROS installation.

What ``ros2 bag record`` leaves behind is not always one tidy file: long recordings are split into
``NAME_0.mcap``, ``NAME_1.mcap``, ... listed in ``metadata.yaml`` (in recording order, which is not
alphabetical order past ``_9``); a recorder killed mid-write leaves split files without
``metadata.yaml`` and a last file without its mcap footer; a Jazzy ``record -a`` also stores service
events whose schemas ``rosbags`` cannot parse; Humble and older store sqlite3 files without message
definitions. :class:`Recording` reads all of these:

- files in ``metadata.yaml`` order; without (or with an unreadable) ``metadata.yaml``, the folder's
  ``.mcap``/``.db3`` files in recording order (their split index), with a warning;
- each file through ``rosbags``' storage readers, so nothing but the requested topics is ever
  deserialised or even has its schema parsed; messages are deserialised with the ROS 2 Jazzy
  definitions, or the recording's own definition for types Jazzy does not have;
- an mcap file without its summary (a recording cut short) is streamed front to back with chunk CRCs
  checked; a file that is damaged part-way is left with a warning after its readable messages and
  the next file is read. :attr:`Recording.damage` lists what was lost; the caller decides whether
  that is an error (the frame reader raises :class:`BagReadError` after yielding everything).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOGGER = logging.getLogger(__name__)

STORAGE_SUFFIXES = (".mcap", ".db3")
MAX_FILES_KEPT_OPEN = 64
_SPLIT_INDEX = re.compile(r"_(\d+)$")


class BagReadError(RuntimeError):
    """Damaged data: a recording that cannot be read (or only partly; the readable part was yielded)."""


class NotABagError(ValueError):
    """Bad input: the path holds no rosbag2 storage file at all."""


@dataclass(frozen=True)
class TopicConnection:
    """One topic of one storage file: name, type, recorded QoS and message definition."""

    topic: str
    msgtype: str
    offered_qos: tuple = ()  # rosbags Qos tuples as recorded
    msgdef_format: str = ""  # "msg", "idl" or "" (none stored: Humble and older sqlite3)
    msgdef: str = ""
    message_count: int = 0  # from the file's index (0 when streamed without one)


@dataclass
class Recording:
    """The ordered storage files of one recording (see the module docstring)."""

    path: Path
    files: list[Path]
    warnings: list[str] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)
    _connections: dict[Path, list[TopicConnection]] = field(default_factory=dict, repr=False)
    _typestore: object = field(default=None, repr=False)
    _definitions: dict[str, TopicConnection] = field(default_factory=dict, repr=False)
    _refused: dict[str, str] = field(default_factory=dict, repr=False)
    _kept_open: dict[Path, object] = field(default_factory=dict, repr=False)  # indexed files opened once

    # ------------------------------------------------------------------ topics

    def connections(self) -> list[TopicConnection]:
        """Every topic of every readable file (a file that cannot be opened is noted in ``damage``)."""
        found = []
        for file in self.files:
            for connection in self._file_connections(file):
                found.append(connection)
        return found

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type over all files."""
        return {c.topic: c.msgtype for c in self.connections()}

    def _file_connections(self, file: Path) -> list[TopicConnection]:
        if file not in self._connections:
            try:
                storage = _open_storage(file)
            except _StorageOpenError as error:
                self._note_damage(file, f"cannot be opened ({error})")
                self._connections[file] = []
            else:
                try:
                    self._connections[file] = storage.topic_connections()
                except Exception as error:  # a cut-short stream: its channels so far
                    self._connections[file] = getattr(storage, "seen", [])
                    if not self._connections[file]:
                        detail = str(error) or "unexpected end of data"
                        self._note_damage(file, f"cannot be read ({type(error).__name__}: {detail})")
                if isinstance(storage, _IndexedStorage) and len(self._kept_open) < MAX_FILES_KEPT_OPEN:
                    self._kept_open[file] = storage  # opening parses the index: do it once
                else:
                    storage.close()
            for connection in self._connections[file]:
                self._definitions.setdefault(connection.msgtype, connection)
        return self._connections[file]

    def _note_damage(self, file: Path, what: str) -> None:
        text = f"{file.name}: {what}"
        if text not in self.damage:
            self.damage.append(text)
            LOGGER.warning("recording %s: %s", self.path, text)

    # ------------------------------------------------------------------ messages

    def messages(self, topics: set[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, log time ns, serialised bytes) of ``topics`` (None: all), file by file.

        A file that fails part-way is noted in :attr:`damage` and reading goes on with the next one.
        """
        for file in self.files:
            if not self._file_connections(file):
                continue  # nothing readable (noted in damage) or no topics at all
            try:
                storage = self._kept_open.pop(file, None) or _open_storage(file)
            except _StorageOpenError:
                continue  # already noted in damage
            count = 0
            try:
                for message in storage.messages(topics):
                    count += 1
                    yield message
            except GeneratorExit:
                raise
            except Exception as error:  # storage layers raise many unrelated types on bad bytes
                detail = str(error) or "unexpected end of data"
                self._note_damage(file, f"damaged after {count} message(s) "
                                        f"({type(error).__name__}: {detail})")
            finally:
                storage.close()

    def close(self) -> None:
        """Close the files kept open between listing topics and reading messages."""
        while self._kept_open:
            self._kept_open.popitem()[1].close()

    def deserialize(self, raw: bytes, msgtype: str):
        """A message object; ValueError when its type has no usable definition."""
        typestore = self._types()
        if msgtype not in typestore.types:
            self._register(msgtype)
        return typestore.deserialize_cdr(raw, msgtype)

    def _types(self):
        if self._typestore is None:
            from rosbags.typesys import Stores, get_typestore

            self._typestore = get_typestore(Stores.ROS2_JAZZY)
        return self._typestore

    def _register(self, msgtype: str) -> None:
        """Register the recording's own definition of one type (only ever for topics being read)."""
        if msgtype in self._refused:
            raise ValueError(self._refused[msgtype])
        connection = self._definitions.get(msgtype)
        if connection is None or not connection.msgdef:
            reason = f"type {msgtype} is not a ROS 2 Jazzy type and the recording has no definition of it"
        else:
            from rosbags.typesys import get_types_from_idl, get_types_from_msg

            try:
                if connection.msgdef_format == "idl":
                    types = get_types_from_idl(connection.msgdef)
                else:
                    types = get_types_from_msg(connection.msgdef, msgtype)
                self._types().register(types)
                return
            except Exception as error:  # rosbags' parser raises its own and generic errors
                reason = (f"the recorded definition of {msgtype} cannot be parsed "
                          f"({type(error).__name__}: {str(error).splitlines()[0][:120]})")
        self._refused[msgtype] = reason
        raise ValueError(reason)


def open_recording(bag_path: str | Path) -> Recording:
    """The storage files of a recording at ``bag_path`` in reading order.

    ``bag_path`` is a rosbag2 directory, a folder of split files without ``metadata.yaml``, a storage
    file inside either (resolves to its directory), or a bare ``.mcap``/``.db3`` file.
    Raises FileNotFoundError (no such path) and NotABagError (nothing to read there).
    """
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"no bag at {path}")
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise NotABagError(f"{path}: not a rosbag2 directory, .mcap or .db3 file")
        if not (path.parent / "metadata.yaml").exists():
            return Recording(path=path, files=[path])
        path = path.parent
    warnings: list[str] = []
    missing: list[str] = []
    listed = _files_from_metadata(path, warnings)
    on_disk = sorted((p for p in path.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES),
                     key=_recording_order)
    if listed is None:
        if not on_disk:
            raise NotABagError(f"{path} holds no metadata.yaml and no .mcap/.db3 storage files: "
                               "not a rosbag2 recording")
        warnings.append(f"{path}: reading {len(on_disk)} storage file(s) in recording order without "
                        f"metadata.yaml: {', '.join(p.name for p in on_disk)}")
        files = on_disk
    else:
        files = [p for p in listed if p.exists()]
        missing = [p.name for p in listed if not p.exists()]
        extra = [p for p in on_disk if p not in listed]
        if missing:
            warnings.append(f"{path}: metadata.yaml lists missing file(s) {', '.join(missing)}")
        if extra:
            warnings.append(f"{path}: reading file(s) not listed in metadata.yaml after the listed ones: "
                            f"{', '.join(p.name for p in extra)}")
            files += extra
        if not files:
            raise NotABagError(f"{path}: none of the storage files listed in metadata.yaml exists")
    for warning in warnings:
        LOGGER.warning("%s", warning)
    recording = Recording(path=path, files=files, warnings=warnings)
    recording.damage.extend(f"{name}: missing" for name in missing)
    return recording


def _recording_order(path: Path) -> tuple:
    """``NAME_2.mcap`` before ``NAME_10.mcap``: rosbag2's split index, then the name."""
    match = _SPLIT_INDEX.search(path.stem)
    if match is None:
        return path.stem, -1, path.name
    return path.stem[:match.start()], int(match.group(1)), path.name


def _files_from_metadata(directory: Path, warnings: list[str]) -> list[Path] | None:
    """Files listed in ``metadata.yaml`` in its order; None (with a warning) when absent or unreadable."""
    metadata = directory / "metadata.yaml"
    if not metadata.exists():
        return None
    try:
        import yaml

        document = yaml.safe_load(metadata.read_text(encoding="utf-8"))
        names = document["rosbag2_bagfile_information"]["relative_file_paths"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("relative_file_paths is not a list of file names")
    except Exception as error:  # yaml, decoding and shape errors alike
        warnings.append(f"{metadata} is unreadable ({type(error).__name__}: {str(error)[:160]}); "
                        "ignoring it")
        return None
    return [directory / Path(name).name for name in names]


# ---------------------------------------------------------------------------------------------
# one storage file


class _StorageOpenError(Exception):
    """A storage file that cannot be opened at all."""


def _open_storage(file: Path):
    if file.suffix == ".db3":
        return _IndexedStorage(file)
    try:
        return _IndexedStorage(file)
    except _StorageOpenError as error:  # no summary / footer: a recording cut short
        LOGGER.warning("%s has no usable index (%s): reading its records front to back", file.name, error)
        return _McapStream(file)


def _connection_from_rosbags(connection) -> TopicConnection:
    from rosbags.interfaces import MessageDefinitionFormat

    formats = {MessageDefinitionFormat.MSG: "msg", MessageDefinitionFormat.IDL: "idl"}
    fmt = formats.get(connection.msgdef.format, "")
    qos = tuple(getattr(connection.ext, "offered_qos_profiles", ()) or ())
    return TopicConnection(connection.topic, connection.msgtype, qos, fmt, connection.msgdef.data or "",
                           int(connection.msgcount or 0))


class _IndexedStorage:
    """A storage file through ``rosbags``' own storage readers (no definitions parsed)."""

    def __init__(self, file: Path) -> None:
        from rosbags.rosbag2.storage_mcap import McapReader
        from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader

        self._reader = Sqlite3Reader(file) if file.suffix == ".db3" else McapReader(file)
        try:
            self._reader.open()
        except Exception as error:  # ReaderError, apsw and struct errors
            raise _StorageOpenError(f"{type(error).__name__}: {error}") from error

    def topic_connections(self) -> list[TopicConnection]:
        return [_connection_from_rosbags(c) for c in self._reader.connections]

    def messages(self, topics: set[str] | None) -> Iterator[tuple[str, str, int, bytes]]:
        wanted = [c for c in self._reader.connections if topics is None or c.topic in topics]
        if not wanted:
            return
        for connection, log_time, raw in self._reader.messages(wanted):
            yield connection.topic, connection.msgtype, log_time, raw

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:  # closing a damaged file may fail again; the cause was already reported
            LOGGER.debug("closing a storage file failed", exc_info=True)


class _McapStream:
    """Records of an .mcap file read front to back with chunk CRCs checked (no summary needed)."""

    def __init__(self, file: Path) -> None:
        self._file = file
        self.seen: list[TopicConnection] = []

    def topic_connections(self) -> list[TopicConnection]:
        for _ in self._records(None):
            pass
        return self.seen

    def messages(self, topics: set[str] | None) -> Iterator[tuple[str, str, int, bytes]]:
        yield from self._records(topics)

    def _records(self, topics: set[str] | None) -> Iterator[tuple[str, str, int, bytes]]:
        from mcap.records import Channel, Message, Schema
        from mcap.stream_reader import StreamReader

        self.seen = []
        schemas: dict[int, Schema] = {}
        channels: dict[int, tuple[str, str]] = {}
        with self._file.open("rb") as stream:
            for record in StreamReader(stream, validate_crcs=True).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    schema = schemas.get(record.schema_id)
                    msgtype = schema.name if schema else ""
                    channels[record.id] = (record.topic, msgtype)
                    fmt = {"ros2msg": "msg", "ros2idl": "idl"}.get(schema.encoding if schema else "", "")
                    self.seen.append(TopicConnection(record.topic, msgtype, (), fmt,
                                                     schema.data.decode(errors="replace") if schema else ""))
                elif isinstance(record, Message) and record.channel_id in channels:
                    topic, msgtype = channels[record.channel_id]
                    if topics is None or topic in topics:
                        yield topic, msgtype, record.log_time, record.data

    def close(self) -> None:
        """Nothing to close (the file is closed as it is streamed)."""
