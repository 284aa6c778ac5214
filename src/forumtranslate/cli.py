"""The ``forumtranslate`` command: a thin layer over the Python API.

Each command parses its options, calls one API function and prints the result. Errors the
user can fix (``ForumTranslateError``) become one line on stderr and exit status 2; heavy
libraries (torch, transformers) are imported only inside the commands that need them.
"""

from __future__ import annotations

import errno
import functools
import re
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from forumtranslate import __version__
from forumtranslate.errors import ForumTranslateError

# OSErrors that come from the machine, not from a bug: a full disk, a read-only one.
ENVIRONMENT_ERRNOS = {
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO")
    if hasattr(errno, name)
}


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's own errors into a one-line message and exit status 2.

    Also an OSError of the machine's making (disk full, read-only) that a library raised
    before ours could name it: it is not a bug, so it gets a message, not a traceback.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ForumTranslateError as err:
            fail(str(err))
        except OSError as err:
            if err.errno not in ENVIRONMENT_ERRNOS:
                raise
            fail(f"{err.filename}: {err.strerror}" if err.filename else str(err))

    return wrapper


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2: messages that quote a library keep to one line."""
    one_line = re.sub(r"\s*\n\s*", " ", message.strip())
    click.echo(f"forumtranslate: error: {one_line}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forumtranslate")
def main() -> None:
    """Translate Japanese forum remarks into English under a glossary, align the output
    with human references, score it, and export it for review."""


# --- segment -------------------------------------------------------------------------


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--lang",
    type=click.Choice(["ja", "en"]),
    default=None,
    help="Language of the text (default: guessed from the path, data/en/ → en, else ja).",
)
@user_errors
def segment(path: Path, lang: str | None) -> None:
    """Print the sentences of PATH, one per line, with the PDF's line breaks repaired."""
    from forumtranslate.corpus import read_text
    from forumtranslate.segment import segment_text

    language = lang or ("en" if "en" in path.parts else "ja")
    for seg in segment_text(read_text(path), doc_id=path.stem, language=language):
        click.echo(seg.text)


# --- run -----------------------------------------------------------------------------


@main.command()
@click.option(
    "--model", help="Hugging Face id or local folder (default Helsinki-NLP/opus-mt-ja-en)."
)
@click.option("--revision", help="Model revision (branch, tag or commit) on the Hub.")
@click.option(
    "--backend",
    type=click.Choice(["transformers", "ct2"]),
    help="Inference engine (transformers); ct2: CTranslate2.",
)
@click.option("--terms", type=click.Choice(["hard", "off"]), help="Glossary constraints (hard).")
@click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam size (4); 1 is greedy.")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), help="Padded tokens per batch.")
@click.option(
    "--shortlist",
    type=click.IntRange(min=0),
    help="Target pieces kept by score, plus glossary and copied pieces (16000); 0: off.",
)
@click.option(
    "--no-shortlist", is_flag=True, default=False, help="Decode over the whole vocabulary."
)
@click.option(
    "--no-confidence",
    is_flag=True,
    default=False,
    help="Skip the model's second pass that scores its own output (faster; confidence null).",
)
@click.option("--device", help="cpu, cuda, cuda:N or auto (auto).")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), help="(float32)")
@click.option(
    "--threads", type=click.IntRange(min=1), help="CPU threads: torch's; ct2: per parallel batch."
)
@click.option(
    "--compute-type", help="ct2: int8, int8_float16, float16, float32... (int8 CPU, float16 GPU)."
)
@click.option(
    "--inter-threads", type=click.IntRange(min=1), help="ct2: batch parts decoded in parallel (1)."
)
@click.option(
    "--context",
    "context_sentences",
    type=click.IntRange(min=0),
    help="Decoder-only models: preceding sentences of the document shown in the prompt (0).",
)
@click.option("--data", "data", type=click.Path(file_okay=False, path_type=Path), help="(data)")
@click.option(
    "--glossary", "glossary", type=click.Path(path_type=Path), help="(glossary/terms.tsv)"
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="forumtranslate.toml",
    show_default=True,
    help="Project config file with a [run] table of defaults.",
)
@click.option("--no-score", is_flag=True, help="Translate only; skip alignment and scoring.")
@click.option(
    "--allow-unspellable-terms",
    is_flag=True,
    help="A hard term the model's vocabulary cannot spell is a warning, translated "
    "unconstrained and recorded as unspellable (default: an error).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: in this process; ray: on a Ray cluster, same records (pip install -e '.[ray]').",
)
@click.option(
    "--address", help="ray: cluster address (default: $RAY_ADDRESS, else start one here)."
)
@click.option("--actors", type=click.IntRange(min=1), help="ray: model-holding actors (1).")
@click.option(
    "--gpus-per-actor",
    type=click.FloatRange(min=0),
    help="ray: GPUs per actor (0; 0.5 shares one).",
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, path_type=Path),
    help="ray: translate this instead of --data: a folder of .txt files, a .jsonl or .parquet "
    "table, or a datasets folder (save_to_disk); no references, so no scores.",
)
@click.option(
    "--input-format",
    type=click.Choice(["auto", "data", "folder", "jsonl", "parquet", "hf"]),
    default="auto",
    show_default=True,
    help="ray: what --input is.",
)
@click.option("--id-column", default="doc_id", show_default=True, help="ray: --input's id column.")
@click.option("--text-column", default="text", show_default=True, help="ray: --input's text.")
@user_errors
def run(
    config_path: Path, no_score: bool, allow_unspellable_terms: bool, engine: str, **options: Any
) -> None:
    """Translate the corpus under the glossary, then align and score it.

    Reads data/manifest.tsv and data/ja/, writes a run folder (default runs/<model>-...):
    run.json, translations.jsonl, alignment.jsonl, scores.json. Interrupted, the same
    command resumes where it stopped.
    """
    from forumtranslate.config import load_run_config
    from forumtranslate.run import RunConfig, RunInterrupted, default_out_dir
    from forumtranslate.run import run as run_job
    from forumtranslate.translate import DecodingOptions

    ray_options = {key: options.pop(key) for key in RAY_OPTIONS}
    if engine == "local" and any(ray_options[key] is not None for key in RAY_ONLY):
        raise click.UsageError(
            "--address, --actors, --gpus-per-actor and --input need --engine ray"
        )
    if options.pop("no_shortlist"):
        options["shortlist"] = 0
    if options.pop("no_confidence"):
        options["confidence"] = False
    settings = load_run_config(config_path)
    settings.update({key: value for key, value in options.items() if value is not None})
    backend = settings.get("backend", "transformers")
    if "threads" in settings and backend == "transformers":
        import torch

        torch.set_num_threads(settings["threads"])
    decoding = DecodingOptions(
        **{
            key: settings[key]
            for key in ("beam_size", "terms", "max_batch_tokens", "shortlist", "confidence")
            if key in settings
        }
    )
    model = settings.get("model", "Helsinki-NLP/opus-mt-ja-en")
    config = RunConfig(
        out_dir=Path(settings.get("out") or default_out_dir(model, decoding)),
        data_dir=Path(settings.get("data", "data")),
        glossary_path=Path(settings.get("glossary", "glossary/terms.tsv")),
        model=model,
        revision=settings.get("revision"),
        backend=backend,
        device=settings.get("device", "auto"),
        dtype=settings.get("dtype", "float32"),
        decoding=decoding,
        align_and_score=not no_score,
        compute_type=settings.get("compute_type", "default"),
        inter_threads=settings.get("inter_threads", 1),
        intra_threads=settings.get("threads", 0),
        allow_unspellable_terms=allow_unspellable_terms,
        context_sentences=settings.get("context_sentences", 0),
    )
    try:
        with _sigterm_as_interrupt():
            if engine == "ray":
                result = _run_on_ray(config, settings.get("threads"), **ray_options)
            else:
                result = run_job(config)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM outside a batch (loading, aligning, scoring)
        raise RunInterrupted(
            "interrupted; finished batches are saved, run the same command again to resume",
            config.out_dir,
        ) from None
    click.echo(
        f"{result.sentences} sentences ({result.translated_now} translated now, "
        f"{result.resumed} from an earlier start) → {result.out_dir}"
    )
    if result.scores is not None:
        from forumtranslate.score import format_scores

        click.echo(format_scores(result.scores, documents=False))
    from forumtranslate.run import appended_terms

    appended = appended_terms(result.out_dir)
    if appended:
        segments = sorted(set(appended))
        shown = ", ".join(segments[:5]) + (", …" if len(segments) > 5 else "")
        click.echo(
            f"forumtranslate: warning: {len(appended)} glossary term(s) in {len(segments)} "
            f"sentence(s) could not be placed by the model and were appended after the "
            f"sentence ({shown}); see how=appended in {result.out_dir / 'translations.jsonl'} "
            "or the 'appended' filter of the review page",
            err=True,
        )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, a scheduler's stop) ends a run as Ctrl-C does, with the message that
    says how to resume, instead of silently; while translating, the run's own handler
    finishes the batch in hand first."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, AttributeError):  # not the main thread, or no SIGTERM
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


RAY_ONLY = ("address", "actors", "gpus_per_actor", "input_path")
RAY_OPTIONS = (*RAY_ONLY, "input_format", "id_column", "text_column")


def _run_on_ray(
    config: Any,
    threads: int | None,
    *,
    address: str | None,
    actors: int | None,
    gpus_per_actor: float | None,
    input_path: Path | None,
    input_format: str,
    id_column: str,
    text_column: str,
) -> Any:
    """``run --engine ray``: --threads are each actor's CPUs; an --input other than a corpus
    folder has no references, so it is translated only."""
    from dataclasses import replace

    from forumtranslate.distributed import InputSource, RayOptions, detect_format, run_ray

    options = RayOptions(
        address=address,
        actors=actors or 1,
        cpus_per_actor=float(threads or 1),
        gpus_per_actor=gpus_per_actor or 0.0,
    )
    source = None
    if input_path is not None:
        source = InputSource(input_path, input_format, id_column, text_column)
        fmt = detect_format(input_path) if input_format == "auto" else input_format
        if fmt != "data":
            config = replace(config, align_and_score=False)
    return run_ray(config, options, source)


# --- models --------------------------------------------------------------------------


@main.group()
def models() -> None:
    """Manage the translation models this machine can use offline."""


@models.command("fetch")
@click.argument("name", default="Helsinki-NLP/opus-mt-ja-en")
@click.option("--revision", help="Branch, tag or commit to fetch (all files from it).")
@user_errors
def models_fetch(name: str, revision: str | None) -> None:
    """Download model NAME into the Hugging Face cache, for use with HF_HUB_OFFLINE=1.

    Without --revision, as `run` resolves it: weights from main if main has safetensors,
    else from the Hub's conversion bot's open pull request, the rest from main."""
    from forumtranslate.models import fetch_model

    source = fetch_model(name, revision)
    if source.weights_ref:
        click.echo(
            f"{name}: config and tokenizer from main ({source.revision}), "
            f"weights from {source.weights_ref} ({source.weights_revision})"
        )
    else:
        click.echo(f"{name}: all files from {revision or 'main'} ({source.revision})")
    click.echo(f"cached at {source.folder}")


@models.command("list")
@user_errors
def models_list() -> None:
    """What the Hugging Face cache holds: per model, each cached revision with its weights
    files and size, and the files a run without --revision would use."""
    from forumtranslate.models import cached_models, format_cached_models, hub_cache

    click.echo(format_cached_models(cached_models(), hub_cache()), nl=False)


# --- glossary ------------------------------------------------------------------------


@main.group()
def prompt() -> None:
    """The prompts a decoder-only model (Qwen3, Gemma 3, Llama, Mistral) is given."""


@prompt.command("show")
@click.option("--model", required=True, help="A decoder-only model: Hugging Face id or folder.")
@click.option(
    "--glossary", "glossary_path", type=click.Path(path_type=Path), default="glossary/terms.tsv"
)
@click.argument("sentence")
@user_errors
def prompt_show(model: str, glossary_path: Path, sentence: str) -> None:
    """Print the exact prompt SENTENCE is translated with (its glossary lines included)."""
    from forumtranslate.causal import render_prompt
    from forumtranslate.glossary import load_glossary

    terms = load_glossary(glossary_path).find_terms(sentence)
    click.echo(render_prompt(model, sentence, terms), nl=False)
    click.echo()


@main.group()
def glossary() -> None:
    """Check, export and review changes to the terminology glossary (glossary/terms.tsv)."""


@glossary.command("lint")
@click.argument(
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("glossary/terms.tsv"),
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="Corpus to check the terms against (manifest.tsv, ja/, en/).",
)
@click.option("--strict", is_flag=True, help="Fail on warnings too, not only on errors.")
@user_errors
def glossary_lint(path: Path, data_dir: Path, strict: bool) -> None:
    """Check PATH (default glossary/terms.tsv) for errors, and against the corpus for
    terms never used and references that miss or avoid approved renderings."""
    from forumtranslate.glossary import lint_glossary

    messages = lint_glossary(path, data_dir)
    for message in messages:
        click.echo(str(message))
    errors = sum(message.level == "error" for message in messages)
    warnings = len(messages) - errors
    click.echo(f"{path}: {errors} error(s), {warnings} warning(s)", err=True)
    if errors or (strict and warnings):
        sys.exit(1)


@glossary.command("export")
@click.argument(
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("glossary/terms.tsv"),
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tbx", "csv"]),
    required=True,
    help="tbx: TBX-Basic (ISO 30042:2019) with variants and renderings to avoid; "
    "csv: ja,en rows, one per Japanese form (Amazon Translate custom terminology).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File (stdout)."
)
@user_errors
def glossary_export(path: Path, fmt: str, output: Path | None) -> None:
    """Write PATH (default glossary/terms.tsv) as TBX for CAT tools, or as CSV for machine
    translation services' glossaries."""
    from forumtranslate.glossary import load_glossary
    from forumtranslate.storage import write_output
    from forumtranslate.termbase import export_glossary

    text = export_glossary(load_glossary(path), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_output(output, text)


@glossary.command("impact")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--base", "rev", metavar="REV", required=True, help="Git revision to compare with: origin/main."
)
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Corpus (data).")
@click.option("--model", help="Model for the translations (as for run).")
@click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam size (as for run).")
@click.option("--no-translate", is_flag=True, help="List the sentences only; load no model.")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the sentences side by side as one HTML page (as compare --html).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="forumtranslate.toml",
    show_default=True,
    help="Project config file; its [run] table supplies model, data and glossary.",
)
@user_errors
def glossary_impact(
    path: Path | None,
    rev: str,
    no_translate: bool,
    html_out: Path | None,
    config_path: Path,
    **options: Any,
) -> None:
    """What the change to PATH since git revision REV does, as Markdown for a pull request:
    entries added, removed and changed, the corpus sentences whose terms change, and their
    translations under the old and the new glossary (unless --no-translate)."""
    from forumtranslate.config import load_run_config
    from forumtranslate.glossary import load_glossary
    from forumtranslate.termbase import (
        glossary_impact,
        impact_comparison,
        impact_markdown,
        impact_translator,
        load_glossary_at,
    )

    settings = load_run_config(config_path)
    settings.update({key: value for key, value in options.items() if value is not None})
    path = path or Path(settings.get("glossary", "glossary/terms.tsv"))
    new, old = load_glossary(path), load_glossary_at(path, rev)
    load = None if no_translate else functools.partial(impact_translator, settings)
    data_dir = Path(settings.get("data", "data"))
    impact = glossary_impact(old, new, data_dir, load, base=rev)
    click.echo(impact_markdown(impact), nl=False)
    if html_out is not None:
        from forumtranslate.comparison import write_comparison

        write_comparison(impact_comparison(impact), html_out)
        click.echo(f"wrote {html_out}", err=True)


# --- align ---------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Corpus folder of a run's references (default: the data_dir in its run.json).",
)
@click.option(
    "--src",
    "src_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Japanese sources, one per line parallel to HYP: adds anchors and source lengths.",
)
@click.option(
    "--source-only",
    is_flag=True,
    help="The first file is the Japanese source, with no machine output: align it with "
    "REF on anchors (numbers, Latin words) and lengths alone.",
)
@user_errors
def align(
    paths: tuple[Path, ...], data_dir: Path | None, src_path: Path | None, source_only: bool
) -> None:
    """Align machine sentences with reference sentences (beads 1-1, 1-2, 2-1, 2-2, 1-0, 0-1).

    \b
    forumtranslate align RUN_DIR          write RUN_DIR/alignment.jsonl
    forumtranslate align HYP REF          print HYP_IDS<TAB>REF_IDS<TAB>KIND<TAB>SIMILARITY
    forumtranslate align --source-only JA REF

    Indices are 0-based line numbers, comma-joined; empty on the side a 1-0 or 0-1 bead lacks.
    """
    import time
    from collections import Counter

    from forumtranslate.align import align_run, align_sentences, format_links, read_lines

    if len(paths) == 1 and paths[0].is_dir():
        started = time.perf_counter()
        beads = align_run(paths[0], data_dir)
        kinds = Counter(bead.kind for bead in beads)
        summary = ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items()))
        click.echo(
            f"wrote {paths[0] / 'alignment.jsonl'}: {len(beads)} beads ({summary}) "
            f"in {time.perf_counter() - started:.2f} s"
        )
        return
    if len(paths) != 2:
        raise click.UsageError("give a run folder, or two files: HYP REF")
    left, ref = read_lines(paths[0]), read_lines(paths[1])
    if source_only:
        if src_path is not None:
            raise click.UsageError("--source-only takes the source as the first file, not --src")
        links = align_sentences(ref, src=left)
    else:
        src = read_lines(src_path) if src_path is not None else None
        if src is not None and len(src) != len(left):
            raise click.UsageError(f"--src has {len(src)} lines but HYP has {len(left)}")
        links = align_sentences(ref, left, src=src)
    click.echo(format_links(links), nl=False)


# --- score ---------------------------------------------------------------------------


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--hyp",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Machine output, one segment per line.",
)
@click.option(
    "--ref",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference, one segment per line.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
@click.option(
    "-w",
    "--width",
    type=click.IntRange(0, 20),
    default=1,
    show_default=True,
    help="Decimals, as sacrebleu's -w.",
)
@user_errors
def score(
    run_dir: Path | None, hyp: Path | None, ref: Path | None, as_json: bool, width: int
) -> None:
    """Corpus BLEU, chrF, chrF++ and TER (sacrebleu, with signatures) of RUN_DIR or of
    --hyp FILE --ref FILE; a run also gets per-document scores, per-bead sentence chrF and
    BLEU, terminology accuracy, and writes scores.json."""
    import json

    from forumtranslate.score import format_scores, score_files, score_run

    if run_dir is not None and (hyp or ref):
        raise click.UsageError("give RUN_DIR or --hyp/--ref, not both")
    if run_dir is not None:
        result = score_run(run_dir)
    elif hyp is not None and ref is not None:
        result = score_files(hyp, ref)
    else:
        raise click.UsageError("give RUN_DIR, or both --hyp FILE and --ref FILE")
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        click.echo(format_scores(result, width), nl=False)


@main.command()
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--test",
    type=click.Choice(["bs", "ar", "both"]),
    default="both",
    show_default=True,
    help="Paired bootstrap resampling (bs), approximate randomization (ar), or both.",
)
@click.option(
    "--n-bootstrap",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option(
    "--n-trials",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="Randomization trials.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of a table.")
@click.option(
    "-w",
    "--width",
    type=click.IntRange(0, 20),
    default=1,
    show_default=True,
    help="Decimals in the table.",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the two runs side by side, unit by unit, as one HTML page.",
)
@user_errors
def compare(
    run_a: Path,
    run_b: Path,
    test: str,
    n_bootstrap: int,
    n_trials: int,
    as_json: bool,
    width: int,
    html_out: Path | None,
) -> None:
    """Does RUN_B beat RUN_A beyond noise? Paired significance tests (sacrebleu's) with
    95% confidence intervals and p-values, on the reference units both alignments share."""
    import json

    from forumtranslate.score import compare_runs, format_comparison

    tests = ("bs", "ar") if test == "both" else (test,)
    result = compare_runs(run_a, run_b, tests=tests, n_bootstrap=n_bootstrap, n_trials=n_trials)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        click.echo(format_comparison(result, width), nl=False)
    if html_out is not None:
        from forumtranslate.comparison import compare_run_folders, write_comparison

        write_comparison(compare_run_folders(run_a, run_b, result), html_out)
        click.echo(f"wrote {html_out}", err=True)


# --- review --------------------------------------------------------------------------


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Corpus folder, for the manifest's speakers (default: the data_dir in run.json).",
)
@click.option(
    "--glossary",
    "glossary_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Glossary to highlight (default: the one in run.json).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Page to write (default RUN_DIR/review.html).",
)
@click.option("--serve", is_flag=True, help="Then serve the page on 127.0.0.1 until Ctrl-C.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port for --serve; 0 picks a free one.",
)
@user_errors
def review(
    run_dir: Path,
    data_dir: Path | None,
    glossary_path: Path | None,
    out: Path | None,
    serve: bool,
    port: int,
) -> None:
    """Write the side-by-side review page of a scored run: Japanese, machine translation
    and reference per aligned bead, with chrF, glossary terms and filters. One
    self-contained HTML file; it opens without a network."""
    from forumtranslate.review.page import write_review
    from forumtranslate.review.server import ReviewServer

    path = write_review(run_dir, data_dir, out, glossary_path=glossary_path)
    click.echo(f"wrote {path}")
    if serve:
        server = ReviewServer(path, port)
        click.echo(f"serving {server.url} (this machine only); Ctrl-C stops")
        try:
            with _sigterm_as_interrupt():  # kill stops the server as Ctrl-C does
                server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@main.group()
def postedit() -> None:
    """Bring a reviewer's corrections of the machine output back into a run."""


@postedit.command("import")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@user_errors
def postedit_import(run_dir: Path, file: Path) -> None:
    """Store the post-edits in FILE in RUN_DIR/postedits.jsonl and score the machine
    output against them (HTER, written to hter.json).

    FILE is an export of the run, edited: a TSV with its post_edit column corrected, or an
    XLIFF with its targets corrected. An empty cell or target is not imported."""
    from forumtranslate.export import import_postedits

    postedits, hter = import_postedits(run_dir, file)
    corpus = hter["corpus"]
    click.echo(f"{len(postedits)} post-edits from {file} stored in {run_dir}")
    click.echo(
        f"HTER {corpus['score']:.1f} over {hter['units']} post-edited units "
        f"({hter['edited']} changed)  {corpus['signature']}"
    )


# --- export --------------------------------------------------------------------------


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tsv", "tmx", "xliff"]),
    default="tsv",
    show_default=True,
    help="tsv: a spreadsheet of beads; tmx: TMX 1.4b memory; xliff: XLIFF 2.0 for CAT tools.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default RUN_DIR/export.tsv, .tmx or .xlf).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Corpus folder, for the manifest (default: the data_dir in run.json).",
)
@click.option(
    "--glossary",
    "glossary_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Glossary for the term flags (default: the one in run.json).",
)
@user_errors
def export(
    run_dir: Path, fmt: str, out: Path | None, data_dir: Path | None, glossary_path: Path | None
) -> None:
    """Export a scored run: TSV for a spreadsheet (with a post_edit column to correct),
    TMX 1.4b (Japanese ↔ reference), or XLIFF 2.0 (Japanese ↔ machine, for post-editing)."""
    from forumtranslate.export import write_export

    path = write_export(run_dir, fmt, out, data_dir=data_dir, glossary_path=glossary_path)
    click.echo(f"wrote {path}")
