"""``forumtranslate run --engine ray``: the batch job on a Ray cluster, same records as one machine.

For corpora that outgrow one machine, the job runs on Ray Data rather than on a scheduler of
our own. The stages and where they run:

1. **read** (driver): the documents of the input, in a fixed order: a corpus folder
   (``manifest.tsv``, ``ja/``), a folder of ``.txt`` files, a JSONL or Parquet table with
   ``doc_id`` and ``text`` columns, or a ``datasets`` dataset saved with ``save_to_disk``;
2. **segment and match glossary terms**: Ray tasks over blocks of documents;
3. **plan**: the local engine's own ``run.plan_run`` (the batches over the whole corpus,
   the glossary forms the model cannot write), in one Ray task that holds an actor's
   resources (so the device, and the signature in ``run.json``, are the actors');
4. **translate**: a pool of actors, one model load each, each translating whole planned
   batches. Planned batches are grouped into shards, one Ray Data block per shard, the
   longest sentences first so that no actor is left with a long tail;
5. **write** (driver): each finished shard as ``shards/shard-XXXXX.parquet`` (temporary
   file, then rename); when all are done, the run folder's ``translations.jsonl`` and
   ``translations.parquet`` from the shard files alone;
6. **align** each document with its reference (Ray tasks) and **score** the run (driver),
   when the input is a corpus folder with references.

The job is the local engine's: ``run.plan_run`` plans it, ``run.open_run_folder`` checks
and writes ``run.json``, ``run.finish_run`` writes the records, aligns (here with Ray
tasks), scores and writes the review page. What differs is how batches are executed (an
actor pool here, a loop there) and where finished ones are kept (shard files here, the
journal there). Because the segments, the glossary matches, the batches and the record
builder are the local engine's own (``run.document_sources``, ``run.plan_run``,
``run.translation_records``), both engines write the same files byte for byte, and
``run.json`` holds only engine-independent settings. Each engine resumes what the other
began: the local engine takes the batches of Ray's finished shard files into its journal
(``batches_from_shards``), and the Ray engine writes as shard files the shards whose
batches the local engine's journal holds (``write_shards_from_journal``); a shard only
partly in the journal is translated again whole. A finished shard is never redone: a
restart translates only the shards that have no file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forumtranslate import __version__
from forumtranslate.confidence import Confidence
from forumtranslate.corpus import load_documents, read_text
from forumtranslate.errors import ForumTranslateError, InputError
from forumtranslate.glossary import Glossary, load_glossary
from forumtranslate.records import Bead, Document, DocumentInfo, Segment, TermMatch
from forumtranslate.run import (
    JOURNAL_FILE,
    RunConfig,
    RunPlan,
    RunResult,
    SourceSentence,
    check_out_dir,
    check_plan,
    check_references,
    document_sources,
    finish_run,
    glossary_settings,
    make_translator,
    open_run_folder,
    plan_run,
    run_settings,
    translation_records,
    unspellable_entries,
    usable_terms,
)
from forumtranslate.storage import Journal, hold_folder, remove_stale_temporaries, replacing

INPUT_FORMATS = ("auto", "data", "folder", "jsonl", "parquet", "hf")
SHARD_DIR = "shards"
SHARD_METADATA_KEY = b"forumtranslate.shard"
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
Output = tuple[str, list[str], dict[str, Any] | None]  # a translation, its terms' how, confidence


# --- options -------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """How the job is spread over the cluster; none of it changes the output."""

    address: str | None = None  # None: RAY_ADDRESS if set, else a local cluster
    actors: int = 1  # model-holding actors, one model load each
    cpus_per_actor: float = 1.0  # also each actor's torch threads
    gpus_per_actor: float = 0.0
    shard_sentences: int = 1024  # sentences per shard: the unit of resume and scheduling
    documents_per_task: int = 64  # documents per segmentation task

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ForumTranslateError(f"--actors must be at least 1, got {self.actors}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise ForumTranslateError("CPUs per actor must be positive and GPUs not negative")
        if self.shard_sentences < 1 or self.documents_per_task < 1:
            raise ForumTranslateError("shard and task sizes must be at least 1")

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_actor))


@dataclass(frozen=True)
class InputSource:
    """What to translate: a path, its format (``auto`` guesses) and a table's columns."""

    path: Path
    format: str = "auto"
    id_column: str = "doc_id"
    text_column: str = "text"

    def __post_init__(self) -> None:
        if self.format not in INPUT_FORMATS:
            raise ForumTranslateError(
                f"unknown input format {self.format!r} (one of {', '.join(INPUT_FORMATS)})"
            )


# --- reading the input -----------------------------------------------------------------


def detect_format(path: Path) -> str:
    """``data``, ``folder``, ``jsonl``, ``parquet`` or ``hf``, from what is at ``path``."""
    path = Path(path)
    if path.is_file():
        if path.suffix in JSONL_SUFFIXES:
            return "jsonl"
        if path.suffix == ".parquet":
            return "parquet"
        raise InputError("cannot tell the input's format; use --input-format", path)
    if not path.is_dir():
        raise InputError("input not found", path)
    if (path / "manifest.tsv").is_file():
        return "data"
    if any((path / name).is_file() for name in ("state.json", "dataset_dict.json")):
        return "hf"
    if any(path.glob("*.parquet")):
        return "parquet"
    return "folder"


def read_documents(source: InputSource) -> tuple[str, list[Document]]:
    """The input's format and its documents, in input order; doc ids must be unique."""
    fmt = detect_format(source.path) if source.format == "auto" else source.format
    path = Path(source.path)
    if fmt == "data":
        return fmt, load_documents(path, "ja")
    if fmt == "folder":
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise InputError("holds no .txt files", path)
        rows = [(f.relative_to(path).with_suffix("").as_posix(), read_text(f)) for f in files]
        return fmt, _documents(rows, path, "file")
    readers = {"jsonl": _read_jsonl, "parquet": _read_parquet, "hf": _read_dataset}
    return fmt, _documents(readers[fmt](source), path, "row")


def _read_jsonl(source: InputSource) -> list[tuple[Any, Any]]:
    from forumtranslate.storage import read_jsonl

    rows = []
    for line_no, record in enumerate(read_jsonl(Path(source.path)), start=1):
        missing = [c for c in (source.id_column, source.text_column) if c not in record]
        if missing:
            raise InputError(f"record lacks {', '.join(missing)}", source.path, line_no)
        rows.append((record[source.id_column], record[source.text_column]))
    return rows


def _read_parquet(source: InputSource) -> list[tuple[Any, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(source.path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    columns = [source.id_column, source.text_column]
    tables = []
    for file in files:
        try:
            names = pq.read_schema(file).names
        except (OSError, pa.ArrowException) as err:
            raise InputError(f"not a readable Parquet file ({err})", file) from None
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"has no column {', '.join(missing)} (has {', '.join(names)})", file)
        tables.append(pq.read_table(file, columns=columns))
    if not tables:
        raise InputError("holds no .parquet files", path)
    table = pa.concat_tables(tables)
    return list(zip(table.column(0).to_pylist(), table.column(1).to_pylist()))


def _read_dataset(source: InputSource) -> list[tuple[Any, Any]]:
    from datasets import Dataset, load_from_disk

    try:
        dataset = load_from_disk(str(source.path))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(
            f"not a datasets folder saved with save_to_disk ({err})", source.path
        ) from None
    if not isinstance(dataset, Dataset):
        splits = list(dataset)
        if len(splits) != 1:
            raise InputError(
                f"holds the splits {', '.join(splits)}; save the one to translate on its own",
                source.path,
            )
        dataset = dataset[splits[0]]
    missing = [c for c in (source.id_column, source.text_column) if c not in dataset.column_names]
    if missing:
        raise InputError(
            f"has no column {', '.join(missing)} (has {', '.join(dataset.column_names)})",
            source.path,
        )
    return list(zip(dataset[source.id_column], dataset[source.text_column]))


def _documents(rows: Sequence[tuple[Any, Any]], path: Path, unit: str) -> list[Document]:
    """Check the rows as ``read_text`` checks a file, and make them documents."""
    documents, seen = [], set()
    for number, (doc_id, text) in enumerate(rows, start=1):
        where = f"{unit} {number}"
        if not isinstance(doc_id, str) or not doc_id.strip():
            raise InputError(f"{where}: doc_id must be a non-empty string", path)
        if doc_id in seen:
            raise InputError(f"{where}: duplicate doc_id {doc_id!r}", path)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where} ({doc_id}): the text is empty or not a string", path)
        if "\r" in text:
            raise InputError(f"{where} ({doc_id}): has CR or CRLF line ends; convert to LF", path)
        if text.startswith("\ufeff"):
            raise InputError(f"{where} ({doc_id}): starts with a byte-order mark", path)
        if "\x00" in text:
            raise InputError(f"{where} ({doc_id}): holds a NUL character (U+0000)", path)
        seen.add(doc_id)
        info = DocumentInfo(doc_id, "", "", "", "", "")
        documents.append(Document(info=info, text=text, path=f"{path}#{doc_id}"))
    if not documents:
        raise InputError("holds no documents", path)
    return documents


def input_settings(source: InputSource, fmt: str, documents: Sequence[Document]) -> dict[str, Any]:
    """What identifies a non-corpus input in run.json: its path, columns and content."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update((json.dumps([document.doc_id, document.text]) + "\n").encode("utf-8"))
    return {
        "path": str(source.path),
        "format": fmt,
        "columns": {"id": source.id_column, "text": source.text_column},
        "documents": len(documents),
        "sha256": digest.hexdigest(),
    }


# --- stage 2: segmentation and glossary matching, as Ray tasks ------------------------


def _term_to_json(term: TermMatch) -> dict[str, Any]:
    return asdict(term)


def _term_from_json(data: dict[str, Any]) -> TermMatch:
    return TermMatch(**{**data, "allowed": tuple(data["allowed"]), "avoid": tuple(data["avoid"])})


SEGMENT_COLUMNS = ("order", "position", "doc_id", "seg_id", "index", "text", "start", "end")


def segment_block(table: Any, glossary: Glossary) -> Any:
    """A block of documents → one row per segment, with its glossary matches as JSON."""
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in (*SEGMENT_COLUMNS, "kind", "terms")}
    for order, doc_id, text in zip(
        table.column("order").to_pylist(),
        table.column("doc_id").to_pylist(),
        table.column("text").to_pylist(),
    ):
        document = Document(DocumentInfo(doc_id, "", "", "", "", ""), text, doc_id)
        for position, source in enumerate(document_sources(document, glossary)):
            segment = source.segment
            terms = [_term_to_json(t) for t in source.terms]
            for name, value in (
                ("order", order),
                ("position", position),
                *((field, getattr(segment, field)) for field in SEGMENT_COLUMNS[2:]),
                ("kind", segment.kind),
                ("terms", json.dumps(terms, ensure_ascii=False)),
            ):
                columns[name].append(value)
    schema = pa.schema(
        [(name, pa.int64()) for name in ("order", "position")]
        + [(name, pa.string()) for name in ("doc_id", "seg_id")]
        + [("index", pa.int64()), ("text", pa.string())]
        + [(name, pa.int64()) for name in ("start", "end")]
        + [("kind", pa.string()), ("terms", pa.string())]
    )
    return pa.table(columns, schema=schema)


def segment_on_ray(
    documents: Sequence[Document], glossary: Glossary, options: RayOptions
) -> list[SourceSentence]:
    """Every segment of every document with its terms, in corpus order: what
    ``run.prepare_sources`` gives, computed by Ray tasks."""
    import ray.data

    items = [{"order": i, "doc_id": d.doc_id, "text": d.text} for i, d in enumerate(documents)]
    blocks = -(-len(items) // options.documents_per_task)
    rows = (
        ray.data.from_items(items, override_num_blocks=blocks)
        .map_batches(
            segment_block,
            fn_kwargs={"glossary": glossary},
            batch_size=None,
            batch_format="pyarrow",
        )
        .take_all()
    )
    rows.sort(key=lambda row: (row["order"], row["position"]))
    return [
        SourceSentence(
            Segment(
                doc_id=row["doc_id"],
                seg_id=row["seg_id"],
                index=row["index"],
                text=row["text"],
                start=row["start"],
                end=row["end"],
                kind=row["kind"],
            ),
            tuple(_term_from_json(t) for t in json.loads(row["terms"])),
        )
        for row in rows
    ]


# --- stage 3: the batch plan -----------------------------------------------------------


def load_translator(config: RunConfig, threads: int) -> Any:
    """The run's translator inside a Ray worker, with ``threads`` CPU threads."""
    if config.backend == "transformers":
        import torch

        torch.set_num_threads(threads)
    return make_translator(config)


def plan_in_worker(
    config: RunConfig, glossary: Glossary, texts: Sequence[str], threads: int
) -> RunPlan:
    """``run.plan_run`` where the model loads: in a Ray worker like the actors'."""
    return plan_run(config, load_translator(config, threads), glossary, texts)


@dataclass(frozen=True)
class Shard:
    """Consecutive planned batches: written to one file, so finished or redone as one."""

    number: int
    batches: tuple[int, ...]
    positions: tuple[int, ...]  # corpus positions of its sentences, in corpus order

    @property
    def name(self) -> str:
        return f"shard-{self.number:05d}.parquet"

    def metadata(self, settings_sha256: str) -> dict[str, Any]:
        positions = ",".join(map(str, self.positions)).encode()
        return {
            "shard": self.number,
            "batches": [self.batches[0], self.batches[-1]],
            "sentences": len(self.positions),
            "positions_sha256": hashlib.sha256(positions).hexdigest(),
            "settings_sha256": settings_sha256,
        }


def plan_shards(batches: Sequence[Sequence[int]], shard_sentences: int) -> list[Shard]:
    """Group planned batches, in plan order, into shards of about ``shard_sentences``:
    a shard closes once it holds that many; a batch is never split."""
    shards: list[Shard] = []
    current: list[int] = []
    size = 0
    for number, batch in enumerate(batches):
        current.append(number)
        size += len(batch)
        if size >= shard_sentences:
            shards.append(_shard(len(shards), current, batches))
            current, size = [], 0
    if current:
        shards.append(_shard(len(shards), current, batches))
    return shards


def _shard(number: int, members: list[int], batches: Sequence[Sequence[int]]) -> Shard:
    positions = sorted(i for b in members for i in batches[b])
    return Shard(number, tuple(members), tuple(positions))


# --- stage 4: translation in actors -----------------------------------------------------


class TranslateBatches:
    """A Ray Data actor: loads the model once, then translates whole planned batches.

    Each output row carries a hash of the actor's signature, so the driver can refuse the
    work of a worker whose model, versions or device differ from the plan's.
    """

    def __init__(self, config: RunConfig, threads: int):
        self.translator = load_translator(config, threads)
        self.signature = _hash(self.translator.signature())

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        translations = []
        for payload in table.column("payload").to_pylist():
            batch = json.loads(payload)
            terms = [tuple(_term_from_json(t) for t in found) for found in batch["terms"]]
            done = self.translator.translate_batch_terms(batch["sources"], terms)
            # Each sentence's text, how each of its terms got there (records.HOW), confidence.
            translations.append(
                json.dumps(
                    [
                        [t.text, list(t.how), t.confidence.to_json() if t.confidence else None]
                        for t in done
                    ]
                )
            )
        return pa.table(
            {
                "shard": table.column("shard"),
                "batch": table.column("batch"),
                "signature": [self.signature] * len(translations),
                "translations": translations,
            }
        )


def _shard_rows(shard: Shard, plan: RunPlan, sources: Sequence[Any]) -> Any:
    """One Ray Data block: a row per planned batch of the shard, sources and the terms to
    constrain (``run.usable_terms``, as the local engine gives them) as JSON."""
    import pyarrow as pa

    batches = plan.batches
    payloads = [
        json.dumps(
            {
                "sources": [sources[i].segment.text for i in batches[b]],
                "terms": [
                    [_term_to_json(t) for t in usable_terms(sources[i].terms, plan.usable)]
                    for i in batches[b]
                ],
            },
            ensure_ascii=False,
        )
        for b in shard.batches
    ]
    return pa.table(
        {
            "shard": pa.array([shard.number] * len(shard.batches), pa.int64()),
            "batch": pa.array(list(shard.batches), pa.int64()),
            "payload": pa.array(payloads, pa.string()),
        }
    )


def translate_on_ray(
    config: RunConfig,
    options: RayOptions,
    pending: Sequence[Shard],
    plan: RunPlan,
    sources: Sequence[SourceSentence],
) -> Iterator[tuple[Shard, list[Output]]]:
    """Each pending shard with its translations, their terms' ``how`` and their confidence
    (in its positions'
    order), as its last batch comes back from the actor pool."""
    import ray.data

    if not pending:
        return
    # Longest sentences first: later shards hold longer batches (the plan sorts by length).
    ordered = sorted(pending, key=lambda s: -s.number)
    batches, signature = plan.batches, _hash(plan.signature)
    dataset = ray.data.from_arrow([_shard_rows(s, plan, sources) for s in ordered])
    translated = dataset.map_batches(
        TranslateBatches,
        fn_constructor_kwargs={"config": config, "threads": options.threads},
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor or None,
    )
    by_number = {s.number: s for s in pending}
    received: dict[int, dict[int, list[Output]]] = {}
    blocks = iter(translated.iter_batches(batch_size=None, batch_format="pyarrow"))
    try:
        for block in blocks:
            for number, batch, worker, outputs in zip(
                block.column("shard").to_pylist(),
                block.column("batch").to_pylist(),
                block.column("signature").to_pylist(),
                block.column("translations").to_pylist(),
            ):
                if worker != signature:
                    raise ForumTranslateError(
                        "a Ray worker's translator differs from the one that planned the run "
                        "(another model, device or library version); every node needs the same"
                    )
                got = received.setdefault(number, {})
                got[batch] = [(text, how, scored) for text, how, scored in json.loads(outputs)]
                shard = by_number[number]
                if len(got) == len(shard.batches):
                    by_position = {
                        i: item for b in shard.batches for i, item in zip(batches[b], got[b])
                    }
                    yield shard, [by_position[i] for i in shard.positions]
                    del received[number]
    finally:  # stop the executor and its actors now, not when the iterator is collected
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


# --- stage 5: shard files ----------------------------------------------------------------


def shard_schema() -> Any:
    """The records of translations.jsonl as Arrow columns, after the corpus ``position``."""
    import pyarrow as pa

    term = pa.struct(
        [
            ("entry_id", pa.string()),
            ("source", pa.string()),
            ("target", pa.string()),
            ("found", pa.bool_()),
            ("how", pa.string()),
            ("rendering", pa.string()),
            ("lemma_found", pa.bool_()),
        ]
    )
    confidence = pa.struct(
        [
            ("mean_logprob", pa.float64()),
            ("min_logprob", pa.float64()),
            ("min_position", pa.int64()),
            ("min_token", pa.string()),
            ("tokens", pa.int64()),
        ]
    )
    return pa.schema(
        [
            ("position", pa.int64()),
            ("doc_id", pa.string()),
            ("seg_id", pa.string()),
            ("index", pa.int64()),
            ("kind", pa.string()),
            ("source", pa.string()),
            ("translation", pa.string()),
            ("terms", pa.list_(term)),
            ("confidence", confidence),
        ]
    )


def write_shard(
    folder: Path,
    shard: Shard,
    sources: Sequence[SourceSentence],
    translations: Sequence[str],
    settings_sha256: str,
    confidences: Sequence[Confidence | None] | None = None,
    how: Sequence[Sequence[str] | None] | None = None,
) -> None:
    """The shard's run records, with their corpus positions, written whole or not at all."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = translation_records(
        [sources[i] for i in shard.positions], translations, confidences, how=how
    )
    rows = [{"position": i, **r} for i, r in zip(shard.positions, records)]
    meta = json.dumps(shard.metadata(settings_sha256)).encode()
    table = pa.Table.from_pylist(
        rows, schema=shard_schema().with_metadata({SHARD_METADATA_KEY: meta})
    )
    with replacing(folder / shard.name) as tmp:
        pq.write_table(table, tmp)


def write_outputs(
    folder: Path,
    shard: Shard,
    sources: Sequence[SourceSentence],
    outputs: Sequence[Output],
    settings_sha256: str,
) -> None:
    """``write_shard`` from the shard's outputs, in its positions' order: (translation, its
    terms' how, confidence as JSON), as actors and the local journal both give them."""
    write_shard(
        folder,
        shard,
        sources,
        [text for text, _, _ in outputs],
        settings_sha256,
        [Confidence.from_json(scored) for _, _, scored in outputs],
        [how for _, how, _ in outputs],
    )


def finished_shards(folder: Path, shards: Sequence[Shard], settings_sha256: str) -> set[int]:
    """The shards whose files are complete; a file from another plan or run is refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    planned = {s.name: s for s in shards}
    done = set()
    for path in sorted(folder.glob("shard-*.parquet")):
        shard = planned.get(path.name)
        if shard is None:
            raise _foreign(path)
        try:
            metadata = pq.read_schema(path).metadata or {}
            found = json.loads(metadata.get(SHARD_METADATA_KEY, b"null"))
        except (OSError, ValueError, pa.ArrowException):
            continue  # unreadable: not finished, it is written again
        if found != shard.metadata(settings_sha256):
            raise _foreign(path)
        done.add(shard.number)
    return done


def batches_from_shards(
    folder: Path, batches: Sequence[Sequence[int]], settings: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The planned batches that finished shard files of a run with ``settings`` hold, in
    the local engine's journal form: how the local engine resumes a folder Ray began.

    A shard's batches are read whole or not at all; a file of other settings, or one that
    cannot be read, gives nothing (its sentences are translated again).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    settings_sha256 = _hash(settings)
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("shard-*.parquet")):
        try:
            metadata = json.loads((pq.read_schema(path).metadata or {})[SHARD_METADATA_KEY])
            rows = pq.read_table(path).to_pylist()
        except (OSError, KeyError, ValueError, pa.ArrowException):
            continue
        if metadata.get("settings_sha256") != settings_sha256:
            continue
        by_position = {row["position"]: row for row in rows}
        first, last = metadata["batches"]
        for number in range(first, min(last, len(batches) - 1) + 1):
            members = [by_position.get(i) for i in batches[number]]
            if any(row is None for row in members):
                continue
            found[str(number)] = {
                "indices": list(batches[number]),
                "translations": [row["translation"] for row in members],
                "how": [[str(t.get("how") or "") for t in row["terms"] or ()] for row in members],
                "confidence": [row["confidence"] for row in members],
            }
    return found


def write_shards_from_journal(
    folder: Path,
    shards: Sequence[Shard],
    journal: dict[str, Any],
    sources: Sequence[SourceSentence],
    settings_sha256: str,
) -> set[int]:
    """Write, from the local engine's journal, every shard whose batches it holds all of:
    how the Ray engine resumes a folder the local engine began. Returns their numbers."""
    written = set()
    for shard in shards:
        if not all(str(b) in journal for b in shard.batches):
            continue
        outputs: dict[int, Output] = {}
        for b in shard.batches:
            unit = journal[str(b)]
            for k, i in enumerate(unit["indices"]):
                outputs[i] = (unit["translations"][k], unit["how"][k], unit["confidence"][k])
        write_outputs(
            folder, shard, sources, [outputs[i] for i in shard.positions], settings_sha256
        )
        written.add(shard.number)
    return written


def _foreign(path: Path) -> ForumTranslateError:
    return ForumTranslateError(
        "is not a shard this run plans (written by another run, or with another shard "
        "size); use another --out folder, or delete its shards/ folder to start it afresh",
        path,
    )


def read_shards(
    folder: Path, shards: Sequence[Shard], count: int
) -> tuple[list[str], list[Confidence | None], list[list[str] | None]]:
    """Every sentence's translation, confidence and its terms' ``how``, in corpus order,
    from the shard files alone."""
    import pyarrow.parquet as pq

    translations: list[str | None] = [None] * count
    confidences: list[Confidence | None] = [None] * count
    how: list[list[str] | None] = [None] * count
    for shard in shards:
        table = pq.read_table(folder / shard.name)
        positions = table.column("position").to_pylist()
        if tuple(positions) != shard.positions:
            raise _foreign(folder / shard.name)
        scored = (
            table.column("confidence").to_pylist()
            if "confidence" in table.column_names
            else [None] * len(positions)
        )
        for position, text, terms, confidence in zip(
            positions,
            table.column("translation").to_pylist(),
            table.column("terms").to_pylist(),
            scored,
        ):
            translations[position] = text
            how[position] = [str(t.get("how") or "") for t in terms or ()]
            confidences[position] = Confidence.from_json(confidence)
    missing = sum(t is None for t in translations)
    if missing:
        raise ForumTranslateError(f"{missing} sentences have no translation in the shards", folder)
    return [t or "" for t in translations], confidences, how


# --- stage 6: alignment per document, as Ray tasks --------------------------------------


def align_block(table: Any) -> Any:
    """A block of documents, each with its records and reference sentences → its beads."""
    import pyarrow as pa

    from forumtranslate.align import align_document

    beads = []
    for doc_id, payload in zip(
        table.column("doc_id").to_pylist(), table.column("payload").to_pylist()
    ):
        data = json.loads(payload)
        found = align_document(doc_id, data["records"], data["ref_ids"], data["ref"])
        beads.append(json.dumps([asdict(bead) for bead in found], ensure_ascii=False))
    return pa.table({"order": table.column("order"), "beads": beads})


def align_on_ray(
    data_dir: Path, records: Sequence[dict[str, Any]], options: RayOptions
) -> list[Bead]:
    """``align.align_run``'s beads, each document aligned in a Ray task."""
    import ray.data

    from forumtranslate.align import reference_sentences

    by_doc: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_doc.setdefault(record["doc_id"], []).append(record)
    items = []
    for order, (doc_id, doc_records) in enumerate(by_doc.items()):
        ref_ids, ref = reference_sentences(data_dir, doc_id)
        payload = {"records": doc_records, "ref_ids": ref_ids, "ref": ref}
        items.append({"order": order, "doc_id": doc_id, "payload": json.dumps(payload)})
    blocks = -(-len(items) // options.documents_per_task)
    rows = (
        ray.data.from_items(items, override_num_blocks=blocks)
        .map_batches(align_block, batch_size=None, batch_format="pyarrow")
        .take_all()
    )
    rows.sort(key=lambda row: row["order"])
    return [
        Bead(**{**b, **{k: tuple(b[k]) for k in ("src_seg_ids", "hyp", "ref", "ref_ids")}})
        for row in rows
        for b in json.loads(row["beads"])
    ]


# --- the job ---------------------------------------------------------------------------


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Use the Ray session already open in this process, or join/start one for the job."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(
        address=address,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        yield
    finally:
        ray.shutdown()


def _quiet_ray_data() -> None:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_ray(
    config: RunConfig,
    options: RayOptions | None = None,
    source: InputSource | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> RunResult:
    """``run.run`` on a Ray cluster: the same run folder, plus ``shards/``.

    ``source`` defaults to the corpus folder ``config.data_dir``; other inputs have no
    references, so they need ``align_and_score=False``.
    """
    if getattr(config, "context_sentences", 0):
        raise ForumTranslateError(
            "--context (a decoder-only model's preceding sentences) needs --engine local"
        )
    options = options or RayOptions()
    source = source or InputSource(Path(config.data_dir), "data")
    fmt, documents = read_documents(source)
    if config.align_and_score and fmt != "data":
        raise ForumTranslateError(
            f"a {fmt} input has no reference translations to align and score with; "
            "translate only (--no-score)",
            source.path,
        )
    glossary = load_glossary(config.glossary_path)
    if config.align_and_score:
        check_references(Path(source.path))
    out_dir = Path(config.out_dir)
    if Path(source.path).is_dir():  # a folder of documents, or a corpus
        check_out_dir(out_dir, Path(source.path), config.model)
    with hold_folder(out_dir), ray_session(options.address), _Progress(progress) as bar:
        import ray

        _quiet_ray_data()
        sources = segment_on_ray(documents, glossary, options)
        if not sources:
            raise ForumTranslateError("the corpus has no sentences to translate", source.path)
        texts = ray.put([s.segment.text for s in sources])
        planner = ray.remote(plan_in_worker).options(
            num_cpus=options.cpus_per_actor, num_gpus=options.gpus_per_actor
        )
        plan: RunPlan = _get(planner.remote(config, glossary, texts, options.threads))
        plan.warn()
        batches = plan.batches
        if fmt == "data":
            settings = run_settings(config, plan, glossary, Path(source.path))
        else:
            settings = {
                "forumtranslate": __version__,
                "input": input_settings(source, fmt, documents),
                "glossary": glossary_settings(config, plan, glossary),
                "translator": plan.signature,
            }
        open_run_folder(out_dir, settings)
        folder = out_dir / SHARD_DIR
        folder.mkdir(exist_ok=True)
        remove_stale_temporaries(folder, ("shard-*.parquet",))
        shards = plan_shards(batches, options.shard_sentences)
        settings_sha256 = _hash(settings)
        done = finished_shards(folder, shards, settings_sha256)
        journal = Journal(out_dir / JOURNAL_FILE)
        begun_locally = journal.load()  # a folder the local engine began: its batches count
        if begun_locally:
            check_plan(journal, begun_locally, batches)
            pending_shards = [s for s in shards if s.number not in done]
            done |= write_shards_from_journal(
                folder, pending_shards, begun_locally, sources, settings_sha256
            )
        resumed = sum(len(s.positions) for s in shards if s.number in done)
        bar.start(len(sources), resumed)
        translated_now = 0
        pending = [s for s in shards if s.number not in done]
        finished = translate_on_ray(config, options, pending, plan, sources)
        try:
            with closing(finished):  # an interruption stops the actor pool at once
                for shard, outputs in finished:
                    write_outputs(folder, shard, sources, outputs, settings_sha256)
                    translated_now += len(shard.positions)
                    bar(len(shard.positions), resumed + translated_now)
        except Exception as err:
            raise _unwrap(err) from None
        translations, confidences, how = read_shards(folder, shards, len(sources))
        records = translation_records(
            sources, translations, confidences, unspellable_entries(plan), how
        )
        scores = finish_run(
            config,
            out_dir,
            Path(source.path) if fmt == "data" else None,
            list(records),
            align=lambda data_dir, records: align_on_ray(data_dir, records, options),
        )
    return RunResult(out_dir, len(sources), translated_now, resumed, scores)


def _get(ref: Any) -> Any:
    import ray

    try:
        return ray.get(ref)
    except Exception as err:
        raise _unwrap(err) from None


def _unwrap(err: BaseException) -> BaseException:
    """The project's own error inside a Ray error, so the CLI prints its one line."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ForumTranslateError) and type(current).__module__.startswith(
            "forumtranslate"
        ):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return err


class _Progress:
    """Progress over sentences: the caller's callback, or a bar on stderr."""

    def __init__(self, callback: Callable[[int, int], Any] | None):
        self.callback = callback
        self.tqdm: Any = None

    def __enter__(self) -> _Progress:
        return self

    def start(self, total: int, initial: int) -> None:
        if self.callback is None:
            from tqdm import tqdm

            self.tqdm = tqdm(
                total=total, initial=initial, unit="sent", desc="translating", leave=False
            )

    def __call__(self, step: int, done: int) -> None:
        if self.callback is not None:
            self.callback(step, done)
        elif self.tqdm is not None:
            self.tqdm.update(step)

    def __exit__(self, *exc: Any) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
