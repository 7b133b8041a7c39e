"""Commands: validate, leaderboard build / serve, publish, download. No torch imported here;
huggingface_hub and polars load inside the commands that use them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mdrbench.errors import UserError
from mdrbench.validate import MIN_SEEDS


def _builds_options(f):
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Folder of built datasets to accept results from, instead of the default data "
        "directory ($MDRBENCH_DATA or ~/.cache/mdrbench/datasets).",
    )(f)
    f = click.option(
        "--dataset",
        "datasets",
        multiple=True,
        type=click.Path(path_type=Path),
        help="A built dataset folder (or a folder of them) that results may refer to. Repeatable.",
    )(f)
    f = click.option(
        "--min-seeds",
        type=click.IntRange(1),
        default=MIN_SEEDS,
        show_default=True,
        help="Seeds a ranked entry needs.",
    )(f)
    return f


def _known_builds(datasets, data_dir):
    from mdrbench.validate import KnownBuilds

    return KnownBuilds.discover(datasets, data_dir=data_dir)


@click.command("validate")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@_builds_options
@click.option(
    "--require-predictions",
    is_flag=True,
    help="Fail a result that has no <stem>.predictions.parquet beside it.",
)
def validate_cmd(results, datasets, data_dir, min_seeds, require_predictions):
    """Check results files (or folders of them) before they are trusted or ranked.

    Checks the schema; that the dataset build (name, spec version, manifest sha256) is known;
    that each average equals the mean of its per-domain AUCs; that every entry has at least
    --min-seeds seeds; and, where a predictions Parquet sits beside a result, recomputes its
    test metrics with the one evaluator. Prints each violation; exits 1 when there is any.

    Example: mdrbench validate results/ --dataset data/taobao-10
    """
    from mdrbench.validate import validate

    report = validate(
        results,
        _known_builds(datasets, data_dir),
        min_seeds=min_seeds,
        require_predictions=require_predictions,
    )
    if report.n_files == 0:
        raise UserError(
            f"no result files (*.json) in {', '.join(map(str, results))}: nothing to validate. "
            "Pass the folder `mdrbench eval --out` wrote."
        )
    for v in report.violations:
        click.echo(str(v))
    summary = (
        f"{report.n_files} results file(s), {report.n_predictions_checked} predictions "
        "file(s) recomputed"
    )
    if report.violations:
        bad = len(report.bad_paths())
        click.echo(
            f"FAILED: {len(report.violations)} violation(s) in {bad} file(s)/entr(ies); {summary}.",
            err=True,
        )
        sys.exit(1)
    click.echo(f"OK: {summary}.")


@click.group("leaderboard")
def leaderboard_grp():
    """Build or preview the static leaderboard site.

    Example: mdrbench leaderboard build results/ --out site && mdrbench leaderboard serve site
    """


@leaderboard_grp.command("build")
@click.argument("results_dir", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Site folder: new, empty, or a site this command wrote before (then replaced).",
)
@_builds_options
@click.option(
    "--allow-few-seeds",
    is_flag=True,
    help="Show entries with fewer than --min-seeds seeds, marked unranked, instead of failing.",
)
@click.option("--no-paper", is_flag=True, help="Leave out the paper's reported numbers.")
def build_cmd(results_dir, out, datasets, data_dir, min_seeds, allow_few_seeds, no_paper):
    """Validate every result under RESULTS_DIR and write the static site to --out.

    Any violation stops the build and nothing is written. The site is plain HTML, CSS and
    JavaScript: open --out/index.html from disk or put the folder on any static host.

    Example: mdrbench leaderboard build results/ --out site --dataset data/
    """
    from mdrbench.leaderboard.site import build_site, check_site_folder
    from mdrbench.validate import validate

    check_site_folder(out, [results_dir])  # before any work: never replace what it did not write
    report = validate([results_dir], _known_builds(datasets, data_dir), min_seeds=min_seeds)
    blocking = [v for v in report.violations if not (allow_few_seeds and v.kind == "few_seeds")]
    if blocking:
        for v in blocking:
            click.echo(str(v), err=True)
        hint = (
            ""
            if allow_few_seeds or any(v.kind != "few_seeds" for v in blocking)
            else (" (or pass --allow-few-seeds to show them unranked)")
        )
        raise UserError(
            f"{len(blocking)} violation(s) above: fix or remove those results{hint}; "
            "the site was not written."
        )
    files = build_site(
        report.results,
        out,
        include_paper=not no_paper,
        show_unranked=allow_few_seeds,
        min_seeds=min_seeds,
        n_files=report.n_files,
        n_predictions_checked=report.n_predictions_checked,
    )
    from mdrbench.log import command

    click.echo(
        f"wrote {len(files)} files to {out} from {report.n_files} result file(s); "
        f"open {out / 'index.html'} or run: {command('leaderboard', 'serve', out, '--port', 0)}"
    )


@leaderboard_grp.command("serve")
@click.argument("site_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0 picks a free one).")  # fmt: skip
def serve_cmd(site_dir, port):
    """Serve SITE_DIR on http://127.0.0.1:PORT/ for a local look (Ctrl-C stops).

    Example: mdrbench leaderboard serve site --port 8000
    """
    import functools
    import http.server

    if not (site_dir / "index.html").is_file():
        raise UserError(
            f"no index.html in {site_dir}: build the site first (mdrbench leaderboard build)"
        )

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # quiet: one line per request to stderr
            click.echo(f"{self.address_string()} {format % args}", err=True)

    handler = functools.partial(Handler, directory=str(site_dir))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise UserError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); try another --port"
        ) from None
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    click.echo(f"Serving {site_dir} at {url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@click.command("publish")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--repo-id", required=True, help="Hub dataset repository, ORG/NAME.")
@click.option(
    "--private", is_flag=True, help="Create the repository private (if it does not exist yet)."
)
@click.option(
    "--dry-run",
    "dry_run",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the exact folder that would be uploaded to this (new) folder; upload nothing.",
)
@click.option("--message", default=None, help="Commit message.")
@click.option(
    "--tag",
    default=None,
    help="Also tag the commit, e.g. spec-2.0: the revision a dataset spec pins as its Hub home.",
)
def publish_cmd(path, repo_id, private, dry_run, message, tag):
    """Publish built dataset(s) at PATH to the Hugging Face Hub as one dataset repository.

    PATH is a built dataset folder or a folder of them. Every file is re-hashed against its
    manifest first. Uploads in one commit (creating the repository if missing); the token
    comes from HF_TOKEN or `hf auth login` and is never printed.

    Example: mdrbench publish data/ --repo-id my-lab/mdr-benchmarks --dry-run hub-preview
    """
    from mdrbench import hub

    layout = hub.prepare(path, repo_id)
    for b in layout.datasets:
        if b.manifest.get("kind") == "taobao":
            click.echo(
                f"note: {b.name} derives from the Taobao Tianchi data, redistributable only as "
                "Tianchi's terms allow; make sure they allow this publication.",
                err=True,
            )
    if dry_run is not None:
        listing = hub.write_folder(layout, dry_run)
        for rel, size in listing:
            click.echo(f"{size:>14,}  {rel}")
        click.echo(
            f"{len(listing)} files, {sum(s for _, s in listing):,} bytes in {dry_run} "
            f"(dry run: nothing uploaded to {repo_id})"
        )
        return
    url = hub.upload(layout, private=private, message=message, tag=tag)
    click.echo(
        f"published {', '.join(b.name for b in layout.datasets)} to {repo_id} in one commit: {url}"
    )


@click.command("download")
@click.argument("name_or_repo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory to put each dataset in (default: $MDRBENCH_DATA or ~/.cache/mdrbench/datasets).",
)
@click.option(
    "--revision",
    default=None,
    help="Branch, tag or commit (default: a dataset's pinned revision; a repository's main).",
)
@click.option(
    "--dataset",
    "names",
    multiple=True,
    help="With ORG/REPO: only this dataset (repeatable); default all it holds.",
)
@click.option("--force", is_flag=True, help="Replace datasets already in --out.")
def download_cmd(name_or_repo, out, revision, names, force):
    """Download a benchmark dataset from its pinned Hub home (NAME, see `mdrbench datasets`)
    or the datasets of a repository published by `mdrbench publish` (ORG/REPO), and verify
    every file.

    Only the named datasets' files are fetched. Each lands in OUT/<name>/ only after every
    checksum matches its manifest.

    Example: mdrbench download amazon-6 --out data

    Example: mdrbench download my-lab/mdr-benchmarks --dataset taobao-10 --out data
    """
    from mdrbench import hub
    from mdrbench.builders.specs import DATASETS
    from mdrbench.errors import unknown_name
    from mdrbench.paths import default_data_dir

    out = out if out is not None else default_data_dir()
    if "/" in name_or_repo:
        repo, wanted = name_or_repo, list(names) or None
    elif name_or_repo in DATASETS:
        if names:
            raise UserError("--dataset goes with ORG/REPO; with a dataset NAME, give just NAME")
        spec = DATASETS.get(name_or_repo)
        repo, wanted = spec.hub_repo, [name_or_repo]
        revision = revision or spec.hub_revision
    else:
        raise UserError(
            f"{unknown_name('dataset', name_or_repo, DATASETS.names())} Or pass a Hub "
            "repository as ORG/REPO."
        )
    for p in hub.download(repo, out, revision=revision, force=force, names=wanted):
        click.echo(f"{p}: every file matches manifest.json")
