"""The batch job: segment, match terms, translate, align, score, review; one run folder.

A run folder is reproducible and resumable:

* ``run.json`` records the settings that decide the output (inputs' hashes, glossary hash,
  model id and revision, decoding options, versions). Starting again in the same folder with
  other settings is refused rather than mixing two runs' results.
* Batches are planned from the whole corpus, so every start forms the same batches; each
  finished batch is appended to ``journal.jsonl`` with a checksum before the next starts.
  After a crash or Ctrl-C, the same command translates only the batches not in the journal.
* The final files are written atomically, in corpus order, from the journal alone, so an
  interrupted-then-resumed run ends byte for byte like an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from forumtranslate import __version__
from forumtranslate.confidence import Confidence
from forumtranslate.corpus import load_documents, read_manifest, read_text
from forumtranslate.errors import ForumTranslateError
from forumtranslate.glossary import (
    Glossary,
    TermMatcher,
    lemmatiser,
    load_glossary,
    unspellable_forms,
)
from forumtranslate.records import Document, Segment, TermMatch
from forumtranslate.segment import segment_document
from forumtranslate.storage import (
    Journal,
    dumps_line,
    hold_folder,
    remove_stale_temporaries,
    replacing,
    write_atomic,
)
from forumtranslate.translate import DecodingOptions, Translator

SETTINGS_FILE = "run.json"
JOURNAL_FILE = "journal.jsonl"
TRANSLATIONS_FILE = "translations.jsonl"
# Every file a run folder's commands write (glob patterns): the only temporaries they delete.
RUN_FILES = (
    SETTINGS_FILE,
    TRANSLATIONS_FILE,
    "translations.parquet",
    "alignment.jsonl",
    "scores.json",
    "aligned.*.txt",
    "review.html",
    "postedits.jsonl",
    "hter.json",
    "export.*",
)


class RunInterrupted(ForumTranslateError):
    """Ctrl-C: the batch in hand was finished and saved; the same command resumes."""


@dataclass(frozen=True)
class RunConfig:
    """What ``forumtranslate run`` was asked to do."""

    out_dir: Path
    data_dir: Path = Path("data")
    glossary_path: Path = Path("glossary/terms.tsv")
    model: str = "Helsinki-NLP/opus-mt-ja-en"
    revision: str | None = None
    backend: str = "transformers"
    device: str = "auto"
    dtype: str = "float32"
    decoding: DecodingOptions = field(default_factory=DecodingOptions)
    align_and_score: bool = True
    # ct2 backend only: CTranslate2's compute type and threads (intra 0: its default)
    compute_type: str = "default"
    inter_threads: int = 1
    intra_threads: int = 0
    # A hard term the model's vocabulary cannot spell: an error, or (True) a warning, and the
    # term is left unconstrained and recorded as unspellable.
    allow_unspellable_terms: bool = False
    # decoder-only models: preceding sentences of the same document shown in the prompt
    context_sentences: int = 0


@dataclass(frozen=True)
class SourceSentence:
    """One segment with the glossary terms found in it: the unit the run translates."""

    segment: Segment
    terms: tuple[TermMatch, ...]


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    sentences: int
    translated_now: int
    resumed: int
    scores: dict[str, Any] | None


def default_out_dir(config_model: str, decoding: DecodingOptions) -> Path:
    """runs/<model>-<terms>-beam<k>: the same command always finds its own folder again."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(config_model).name or config_model).strip("-")
    return Path("runs") / f"{slug.lower()}-terms-{decoding.terms}-beam{decoding.beam_size}"


def prepare_sources(data_dir: Path, glossary: Glossary) -> list[SourceSentence]:
    """Every segment of every manifest document, in corpus order, with its terms."""
    sources = [
        source
        for document in load_documents(data_dir, "ja")
        for source in document_sources(document, glossary)
    ]
    if not sources:
        raise ForumTranslateError("the corpus has no sentences to translate", data_dir)
    return sources


def document_sources(document: Document, glossary: Glossary) -> list[SourceSentence]:
    """One document's segments with their glossary terms: what both engines translate."""
    return [
        SourceSentence(segment, tuple(glossary.find_terms(segment.text)))
        for segment in segment_document(document, "ja")
    ]


def preceding(sources: Sequence[SourceSentence], index: int, count: int) -> list[str]:
    """Up to ``count`` sentences of the same document just before sentence ``index``."""
    doc_id = sources[index].segment.doc_id
    before = []
    for i in range(index - 1, max(-1, index - 1 - count), -1):
        if sources[i].segment.doc_id != doc_id:
            break
        before.insert(0, sources[i].segment.text)
    return before


def check_references(data_dir: Path) -> None:
    """Every manifest document needs its reference to be aligned and scored: check them
    all before translating, rather than fail after the whole corpus is translated."""
    for info in read_manifest(data_dir / "manifest.tsv"):
        path = data_dir / "en" / f"{info.doc_id}.txt"
        if not path.exists():
            raise ForumTranslateError(
                "reference translation missing; it is needed to align and score "
                "(--no-score translates without it)",
                path,
            )
        read_text(path)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(read_text(path).encode("utf-8")).hexdigest()  # read_text is lossless


@dataclass(frozen=True)
class RunPlan:
    """What the translator decides before any sentence is translated, on either engine:
    its signature, the batches over the whole corpus, and the hard terms' forms that its
    vocabulary can write (entry id -> forms left, for the entries that lost any)."""

    signature: dict[str, Any]
    batches: list[list[int]]
    usable: dict[str, tuple[str, ...]]
    warnings: tuple[str, ...] = ()  # for the user's terminal, wherever the plan was made

    def warn(self) -> None:
        for warning in self.warnings:
            print(f"forumtranslate: warning: {warning}", file=sys.stderr)


def plan_run(
    config: RunConfig, translator: Translator, glossary: Glossary, texts: Sequence[str]
) -> RunPlan:
    """The plan of a run: the local engine calls it in its process, Ray in a worker."""
    warnings: list[str] = []
    usable = check_spelling(glossary, translator, config.allow_unspellable_terms, warnings)
    return RunPlan(translator.signature(), translator.plan_batches(texts), usable, tuple(warnings))


def run_settings(
    config: RunConfig, plan: RunPlan, glossary: Glossary, data_dir: Path
) -> dict[str, Any]:
    """Everything that decides the output; two runs with equal settings give equal files.

    The inputs hashed are exactly the files a run reads: the manifest and the document of
    each of its ids (which ``check_doc_id`` keeps inside ``ja/``).
    """
    inputs = {"manifest.tsv": _file_hash(data_dir / "manifest.tsv")}
    for info in sorted(read_manifest(data_dir / "manifest.tsv"), key=lambda i: i.doc_id):
        inputs[f"ja/{info.doc_id}.txt"] = _file_hash(data_dir / "ja" / f"{info.doc_id}.txt")
    return {
        "forumtranslate": __version__,
        "data_dir": str(data_dir),
        "inputs_sha256": inputs,
        "glossary": glossary_settings(config, plan, glossary),
        "translator": plan.signature,
    }


def glossary_settings(config: RunConfig, plan: RunPlan, glossary: Glossary) -> dict[str, Any]:
    """run.json's ``glossary``: the file, its hash, and the forms the model cannot write."""
    settings: dict[str, Any] = {"path": str(config.glossary_path), "sha256": glossary.sha256}
    if plan.usable:
        settings["unspellable"] = {k: list(v) for k, v in sorted(plan.usable.items())}
    return settings


def _check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume a run folder made with other settings: it would mix two runs."""
    import json

    path = out_dir / SETTINGS_FILE
    if not path.exists():
        journal = out_dir / JOURNAL_FILE
        if journal.exists() and journal.stat().st_size > 0:
            raise ForumTranslateError(
                f"holds a {JOURNAL_FILE} but no {SETTINGS_FILE}, so nothing tells which "
                "settings made it. Use another --out folder, or delete this one to start afresh",
                out_dir,
            )
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        previous = None
    if previous != settings:
        changed = _differences(previous, settings) if isinstance(previous, dict) else []
        raise ForumTranslateError(
            "this run folder holds a run with other settings "
            f"({', '.join(changed) or 'unreadable run.json'} differ); resuming would mix "
            "the two. Use another --out folder, or delete this one to start afresh",
            out_dir,
        )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ: translator.decoding.beam_size."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix.rstrip(".")]
    changed = []
    for key in sorted(set(old) | set(new)):
        changed += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
    return changed


def check_plan(journal: Journal, done: dict[str, Any], batches: list[list[int]]) -> None:
    """Journal units must be this run's batches; anything else was written by another run."""
    for unit, data in done.items():
        number = int(unit) if unit.isdigit() else -1
        if not (0 <= number < len(batches) and isinstance(data, dict)) or (
            data.get("indices") != batches[number]
            or len(data.get("translations") or ()) != len(batches[number])
        ):
            raise ForumTranslateError(
                f"batch {unit!r} is not one this run plans; the journal was written by another "
                "run. Use another --out folder, or delete this one to start afresh",
                journal.path,
            )


def load_transformers(config: RunConfig) -> Translator:
    """The ``transformers`` backend: the model in PyTorch, decoded by ``constrain``."""
    from forumtranslate.hf import TransformersTranslator
    from forumtranslate.models import load_model

    loaded = load_model(
        config.model, revision=config.revision, device=config.device, dtype=config.dtype
    )
    if loaded.causal:  # a decoder-only model: the same core after a prompt
        from forumtranslate.causal import CausalTranslator

        return CausalTranslator(loaded, config.decoding, config.context_sentences)
    if config.context_sentences:
        raise ForumTranslateError("--context is for decoder-only models (Qwen3, Gemma 3, ...)")
    return TransformersTranslator(loaded, config.decoding, shortlist_forms(config))


def shortlist_forms(config: RunConfig) -> list[str]:
    """The glossary's English forms, which every backend's shortlist keeps."""
    from forumtranslate.shortlist import glossary_forms

    if not config.decoding.shortlist:
        return []
    return glossary_forms(load_glossary(config.glossary_path))


# Backend name -> "module:function" taking a RunConfig; imported only when chosen.
BACKENDS = {
    "transformers": "forumtranslate.run:load_transformers",
    "ct2": "forumtranslate.ct2:from_run_config",
}


def make_translator(config: RunConfig) -> Translator:
    """The backend named in the config, loaded; imported only when a run needs it."""
    import importlib

    target = BACKENDS.get(config.backend)
    if target is None:
        raise ForumTranslateError(
            f"unknown backend {config.backend!r} (available: {', '.join(BACKENDS)})"
        )
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)(config)


def check_out_dir(out_dir: Path, data_dir: Path, model: str | None = None) -> None:
    """Refuse a run folder at, inside or above the data folder (its files would be read as
    documents by every later command, and the folder is the user's, not the run's), or a
    local model folder (whose hash, its revision, would change with the run's files)."""
    out = out_dir.resolve()
    folders = [("data", data_dir)]
    if model is not None and Path(model).expanduser().is_dir():
        folders.append(("model", Path(model).expanduser()))
    for what, folder in folders:
        other = folder.resolve()
        if out == other or out.is_relative_to(other) or other.is_relative_to(out):
            where = "is" if out == other else "is inside" if out.is_relative_to(other) else "holds"
            raise ForumTranslateError(
                f"the run folder {where} the {what} folder {folder}; give --out a folder of "
                "its own (default: runs/...)",
                out_dir,
            )


def check_spelling(
    glossary: Glossary,
    translator: Translator,
    allow: bool,
    warnings: list[str],
) -> dict[str, tuple[str, ...]]:
    """Hard terms whose target forms the model's target vocabulary cannot write.

    Without ``allow`` the first such form is an error at its glossary line; with it, a
    warning per form, added to ``warnings`` (``RunPlan.warn`` prints them). Returns entry
    id -> the forms it can still use (empty: none), for the entries that lost any. A
    backend without a tokenizer to ask is not checked.
    """
    holder = getattr(translator, "loaded", None) or getattr(translator, "model", None)
    tokenizer = getattr(holder, "tokenizer", None)
    if tokenizer is None or translator.options.terms != "hard":
        return {}
    lost: dict[str, list[str]] = {}
    for entry, form in unspellable_forms(glossary, tokenizer):
        message = (
            f"the model's target vocabulary cannot write {form!r} (it comes out as "
            f"{_spelt(tokenizer, form)!r})"
        )
        if not allow:
            raise ForumTranslateError(
                f"{message}; change the term, or pass --allow-unspellable-terms to translate "
                "it unconstrained and record it as unspellable",
                glossary.path,
                entry.line,
            )
        warnings.append(f"{glossary.path}:{entry.line}: {message}")
        lost.setdefault(entry.id, []).append(form)
    return {
        entry_id: tuple(f for f in glossary.get(entry_id).allowed if f not in forms)
        for entry_id, forms in lost.items()
    }


def _spelt(tokenizer: Any, form: str) -> str:
    ids = tokenizer(text_target=form, add_special_tokens=False)["input_ids"]
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def usable_terms(terms: Sequence[TermMatch], usable: dict[str, tuple[str, ...]]) -> list[TermMatch]:
    """The terms to constrain: unspellable forms dropped, terms with none left dropped."""
    out = []
    for term in terms:
        forms = usable.get(term.entry_id)
        if forms is None:
            out.append(term)
        elif forms:
            out.append(replace(term, target=forms[0], allowed=forms))
    return out


def run(
    config: RunConfig,
    translator: Translator | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> RunResult:
    """Run the whole job into ``config.out_dir``, resuming whatever is already there."""
    data_dir, out_dir = Path(config.data_dir), Path(config.out_dir)
    glossary = load_glossary(config.glossary_path)
    sources = prepare_sources(data_dir, glossary)
    if config.align_and_score:
        check_references(data_dir)
    check_out_dir(out_dir, data_dir, config.model)
    _make_folder(out_dir)
    with hold_folder(out_dir):
        translator = translator or make_translator(config)
        texts = [s.segment.text for s in sources]
        plan = plan_run(config, translator, glossary, texts)
        plan.warn()
        batches, usable = plan.batches, plan.usable
        settings = run_settings(config, plan, glossary, data_dir)
        open_run_folder(out_dir, settings)

        journal = Journal(out_dir / JOURNAL_FILE)
        done = journal.load()
        check_plan(journal, done, batches)
        from forumtranslate.distributed import SHARD_DIR, batches_from_shards

        if (out_dir / SHARD_DIR).is_dir():  # a folder the Ray engine began: its shards count
            for unit, data in batches_from_shards(out_dir / SHARD_DIR, batches, settings).items():
                if unit not in done:
                    journal.append(unit, data)
                    done[unit] = data
        resumed = sum(len(batches[int(unit)]) for unit in done)
        translated_now = 0
        bars = nullcontext(progress) if progress else _progress_bar(len(sources), resumed)
        with bars as bar, _stop_after_batch_on_sigint() as stop_requested:
            for number, batch in enumerate(batches):
                if str(number) in done:
                    continue
                extra = {}
                if getattr(translator, "context_sentences", 0):
                    extra["context"] = [
                        preceding(sources, i, translator.context_sentences) for i in batch
                    ]
                outputs = translator.translate_batch_terms(
                    [texts[i] for i in batch],
                    [usable_terms(sources[i].terms, usable) for i in batch],
                    **extra,
                )
                done[str(number)] = {
                    "indices": batch,
                    "translations": [o.text for o in outputs],
                    "how": [list(o.how) for o in outputs],
                    "confidence": [
                        o.confidence.to_json() if o.confidence else None for o in outputs
                    ],
                }
                journal.append(str(number), done[str(number)])
                translated_now += len(batch)
                bar(len(batch), resumed + translated_now)
                if stop_requested():
                    raise RunInterrupted(
                        f"interrupted after {resumed + translated_now} of {len(sources)} "
                        "sentences; finished batches are saved, run the same command again "
                        "to resume",
                        out_dir,
                    )
        translations, confidences = _collect(done, len(sources))
        how = _collect_how(done, len(sources))
        records = translation_records(
            sources, translations, confidences, unspellable_entries(plan), how
        )
        scores = finish_run(config, out_dir, data_dir, list(records))
        return RunResult(out_dir, len(sources), translated_now, resumed, scores)


def unspellable_entries(plan: RunPlan) -> frozenset[str]:
    """The entries none of whose forms the model can write: translated unconstrained."""
    return frozenset(entry_id for entry_id, forms in plan.usable.items() if not forms)


def align_here(data_dir: Path, records: Sequence[dict[str, Any]]) -> list[Any]:
    """Every document's beads, aligned one after another in this process."""
    from forumtranslate.align import align_records

    return align_records(data_dir, records)


def finish_run(
    config: RunConfig,
    out_dir: Path,
    data_dir: Path | None,
    records: Sequence[dict[str, Any]],
    align: Callable[[Path, Sequence[dict[str, Any]]], list[Any]] = align_here,
) -> dict[str, Any] | None:
    """What every engine does once each sentence is translated: write the records, then
    (with references) align, score and write the review page. ``align`` is the engine's:
    in this process, or a task per document on Ray; both align through ``align_document``.
    Returns the scores, or None for a run that is not scored."""
    write_records(out_dir, records)
    if not config.align_and_score or data_dir is None:
        return None
    from forumtranslate.align import write_beads
    from forumtranslate.review.page import write_review
    from forumtranslate.score import score_run

    write_beads(out_dir / "alignment.jsonl", align(data_dir, records))
    scores = score_run(out_dir)
    write_review(out_dir, data_dir, glossary_path=config.glossary_path)
    return scores


def open_run_folder(out_dir: Path, settings: dict[str, Any]) -> None:
    """Create or reopen a run folder for ``settings`` (refusing one made with others) and
    write its run.json: what ``run`` does before translating, for other engines."""
    _make_folder(out_dir)
    _check_settings(out_dir, settings)
    remove_stale_temporaries(out_dir, RUN_FILES)
    write_atomic(out_dir / SETTINGS_FILE, _pretty(settings))


def write_translations(
    out_dir: Path,
    sources: Sequence[SourceSentence],
    translations: Sequence[str],
    confidences: Sequence[Confidence | None] | None = None,
    unspellable: frozenset[str] = frozenset(),
    how: Sequence[Sequence[str] | None] | None = None,
) -> None:
    """translations.jsonl and translations.parquet, as ``run`` writes them, for other engines."""
    write_records(
        out_dir, list(translation_records(sources, translations, confidences, unspellable, how))
    )


def write_records(out_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    """The run's records as translations.jsonl and translations.parquet."""
    write_atomic(out_dir / TRANSLATIONS_FILE, "".join(dumps_line(r) + "\n" for r in records))
    _write_parquet(out_dir, records)


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ForumTranslateError(
            f"cannot create the run folder: {err.strerror}", out_dir
        ) from None


def _collect(done: dict[str, Any], count: int) -> tuple[list[str], list[Confidence | None]]:
    """Translations and confidences in corpus order (none from a journal written before
    runs recorded confidence)."""
    translations: list[str | None] = [None] * count
    confidences: list[Confidence | None] = [None] * count
    for unit in done.values():
        scored = unit.get("confidence") or [None] * len(unit["indices"])
        for index, text, confidence in zip(unit["indices"], unit["translations"], scored):
            translations[index] = text
            confidences[index] = Confidence.from_json(confidence)
    missing = [i for i, t in enumerate(translations) if t is None]
    if missing:
        raise ForumTranslateError(f"{len(missing)} sentences have no translation in the journal")
    return [t or "" for t in translations], confidences


def appended_terms(out_dir: Path) -> list[str]:
    """The seg_ids of the run's records with a term appended after the sentence."""
    import json

    path = Path(out_dir) / TRANSLATIONS_FILE
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        record = json.loads(line)
        found += [record["seg_id"] for t in record["terms"] if t.get("how") == "appended"]
    return found


def _collect_how(done: dict[str, Any], count: int) -> list[list[str] | None]:
    """Per sentence, how each term got there, as the journal has it (None: a journal from
    before the backends said so, or another engine's)."""
    how: list[list[str] | None] = [None] * count
    for unit in done.values():
        for index, item in zip(unit["indices"], unit.get("how") or ()):
            how[index] = list(item) if isinstance(item, list) else None
    return how


def term_how(found: Sequence[bool], how: Sequence[str] | None) -> list[str]:
    """``how`` made to agree with ``found``: a term not in the text is ``missing``; a term in
    it that the backend did not account for was ``decoded``."""
    if how is None or len(how) != len(found):
        how = ["decoded"] * len(found)
    return [
        ("decoded" if h == "missing" else h) if hit else "missing" for hit, h in zip(found, how)
    ]


def translation_records(
    sources: Sequence[SourceSentence],
    translations: Sequence[str],
    confidences: Sequence[Confidence | None] | None = None,
    unspellable: frozenset[str] = frozenset(),
    how: Sequence[Sequence[str] | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of translations.jsonl, in corpus order.

    Per term: ``found`` (exact match, one rendering per occurrence), ``how`` it got there,
    the ``rendering`` credited to it as written, and ``lemma_found`` (found once both sides
    are lemmatised: "critical mineral" for "critical minerals"); a term of an
    ``unspellable`` entry (see ``check_spelling``) is marked so, not merely missing.
    ``confidence`` is null where the backend gave none (``confidence.py`` says what it is).
    """
    lemma = lemmatiser()
    confidences = confidences if confidences is not None else [None] * len(translations)
    for k, (source, translation, confidence) in enumerate(zip(sources, translations, confidences)):
        segment = source.segment
        matcher = TermMatcher(source.terms)
        found = matcher.found(translation)
        renderings = matcher.renderings(translation)
        lemma_found = TermMatcher(source.terms, fold=lemma).found(translation)
        sentence_how = term_how(found, how[k] if how is not None else None)
        yield {
            "doc_id": segment.doc_id,
            "seg_id": segment.seg_id,
            "index": segment.index,
            "kind": segment.kind,
            "source": segment.text,
            "translation": translation,
            "terms": [
                {
                    "entry_id": term.entry_id,
                    "source": term.source,
                    "target": term.target,
                    "found": hit,
                    "how": h,
                    "rendering": rendering,
                    "lemma_found": lemma_hit,
                    **({"unspellable": True} if term.entry_id in unspellable else {}),
                }
                for term, hit, h, rendering, lemma_hit in zip(
                    source.terms, found, sentence_how, renderings, lemma_found
                )
            ],
            "confidence": confidence.to_json() if confidence else None,
        }


def _write_parquet(out_dir: Path, records: Sequence[dict[str, Any]]) -> None:
    """The same records as an Arrow table, for pandas, DuckDB or ``datasets.load_dataset``."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    table = Dataset.from_list(list(records)).data.table
    with replacing(out_dir / "translations.parquet") as tmp:
        pq.write_table(table, tmp)


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


@contextmanager
def _progress_bar(total: int, initial: int) -> Iterator[Callable[[int, int], None]]:
    """A bar on stderr that is wiped when translating ends, however it ends: an error
    message must not be printed on the same line as a half-drawn bar."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="sent", desc="translating", leave=False)
    try:
        yield lambda step, _done: bar.update(step)
    finally:
        bar.close()


STOP_SIGNALS = ("SIGINT", "SIGTERM")  # Ctrl-C, and kill / systemd / a scheduler's stop


@contextmanager
def _stop_after_batch_on_sigint() -> Iterator[Callable[[], bool]]:
    """Make Ctrl-C (or SIGTERM) finish the batch in hand instead of killing it; a second
    one kills."""
    requested = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if requested["stop"]:
            raise KeyboardInterrupt
        requested["stop"] = True

    numbers = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    try:
        previous = {number: signal.signal(number, handler) for number in numbers}
    except ValueError:  # not the main thread: leave signals alone
        yield lambda: False
        return
    try:
        yield lambda: requested["stop"]
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
