"""Publish built datasets to the Hugging Face Hub and fetch them back, checksums verified.

Hub layout of a dataset repository (what `mdrbench publish --dry-run DIR` writes):

    README.md                 dataset card: YAML header (licence, task categories, tags, size
                              category, one config per dataset with data_files per split),
                              then how it was built, per-domain statistics, checksums, citations
    LICENSE.md                the licence notes of each raw-data source
    data/<name>/...           the built folder as `mdrbench build` wrote it: train/val/test
                              Parquet (+ Taobao feature tables), manifest.json, its README.md

Keeping each built folder whole under `data/<name>/` means `manifest.json` travels with the
files it checksums, so a download is verified exactly as `mdrbench verify` checks a build,
and a result's `manifest_sha256` names the same build on every machine.

The token comes from `HF_TOKEN` or `hf auth login` (huggingface_hub resolves it); this
module only asks whether one exists and never prints, logs or writes it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mdrbench import __version__
from mdrbench.atomic import staged, writable_dir
from mdrbench.builders.manifest import (
    MANIFEST,
    describe_split,
    file_sha256,
    load_manifest,
    stats_tables,
)
from mdrbench.builders.manifest import verify as verify_dataset
from mdrbench.errors import UserError

# Hub split name -> file of the built folder.
HUB_SPLITS = {"train": "train.parquet", "validation": "val.parquet", "test": "test.parquet"}
TAGS = ["recommendation", "ctr-prediction", "multi-domain-recommendation", "mamdr", "mdrbench"]
_SIZE_BINS = [
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
]  # fmt: skip


def size_category(n: int) -> str:
    """The Hub's `size_categories` value for `n` examples."""
    for bound, label in _SIZE_BINS:
        if n < bound:
            return label
    return "1B<n<10B"


@dataclass
class Built:
    """One built dataset folder, verified."""

    path: Path
    manifest: dict
    manifest_sha256: str

    @property
    def name(self) -> str:
        return self.manifest["name"]


@dataclass
class Layout:
    """The repository's files: path in repo -> local file (Path) or generated text (str)."""

    repo_id: str
    datasets: list[Built]
    files: dict[str, Path | str] = field(default_factory=dict)

    def size(self, rel: str) -> int:
        v = self.files[rel]
        return v.stat().st_size if isinstance(v, Path) else len(v.encode("utf-8"))


_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def check_repo_id(repo_id: str) -> str:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.match(p) and ".." not in p for p in parts):
        raise UserError(
            f"--repo-id must look like ORG/NAME (letters, digits, '-', '_', '.'; "
            f"e.g. my-lab/mdr-benchmarks), not '{repo_id}'"
        )
    return repo_id


def find_datasets(path: os.PathLike | str) -> list[Path]:
    """PATH itself when it is a built dataset, else the built datasets directly inside it."""
    from mdrbench.validate import dataset_folders

    path = Path(path).expanduser()
    found = dataset_folders(path)
    if not found:
        raise UserError(
            f"no built dataset at '{path}' (no {MANIFEST} in it or in its subfolders). "
            "Build one first: mdrbench build NAME --out DIR, then pass DIR/NAME or DIR."
        )
    return found


def load_verified(paths: list[Path]) -> list[Built]:
    """Each folder's manifest, after re-hashing every file it lists; all problems at once."""
    problems, out = [], []
    for p in paths:
        manifest = load_manifest(p)
        problems += [f"{p}: {msg}" for msg in verify_dataset(p)]
        out.append(Built(p, manifest, file_sha256(p / MANIFEST)))
    if problems:
        raise UserError(
            "the dataset does not match its manifest, so it is not published:\n  "
            + "\n  ".join(problems)
            + "\nRebuild it with `mdrbench build ... --force`."
        )
    names = [b.name for b in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"two folders hold the same dataset {', '.join(dup)}: publish one of them")
    return out


def prepare(path: os.PathLike | str, repo_id: str) -> Layout:
    """Verify the built dataset(s) at `path` and lay out the repository's files."""
    layout = Layout(check_repo_id(repo_id), load_verified(find_datasets(path)))
    layout.files["README.md"] = hub_card(layout)
    layout.files["LICENSE.md"] = licence_file(layout.datasets)
    for b in layout.datasets:
        for rel in [*b.manifest["files"], MANIFEST]:
            layout.files[f"data/{b.name}/{rel}"] = b.path / rel
    return layout


# ---------------------------------------------------------------- the dataset card


def _specs(datasets: list[Built]):
    from mdrbench.builders.specs import DATASETS

    return {b.name: DATASETS.get(b.name) if b.name in DATASETS else None for b in datasets}


def card_metadata(layout: Layout) -> dict:
    """The YAML header of the Hub dataset card."""
    n = sum(b.manifest["totals"]["n_train"] + b.manifest["totals"]["n_val"]
            + b.manifest["totals"]["n_test"] for b in layout.datasets)  # fmt: skip
    configs, infos = [], []
    for i, b in enumerate(layout.datasets):
        cfg = {
            "config_name": b.name,
            "data_files": [
                {"split": split, "path": f"data/{b.name}/{fname}"}
                for split, fname in HUB_SPLITS.items()
            ],
        }
        if i == 0:
            cfg["default"] = True
        configs.append(cfg)
        domains = sorted(b.manifest["domains"], key=lambda d: d["id"])
        infos.append({
            "config_name": b.name,
            "features": [
                {"name": "user_id", "dtype": "int64"},
                {"name": "item_id", "dtype": "int64"},
                # ClassLabel: `datasets` shows each domain_id's domain name.
                {"name": "domain_id", "dtype": {"class_label": {
                    "names": {str(d["id"]): str(d["name"]) for d in domains}}}},
                {"name": "label", "dtype": "int8"},
                # Row side fields are columns of the splits (docs/format.md, "Side fields").
                *({"name": f["name"], "dtype": "int32" if f["kind"] == "categorical"
                   else "float32"} for f in b.manifest.get("fields") or []
                  if f["owner"] == "row"),
            ],
            "splits": [
                {"name": split, "num_examples": int(b.manifest["totals"][f"n_{short}"])}
                for split, short in zip(HUB_SPLITS, ("train", "val", "test"))
            ],
        })  # fmt: skip
    # Taobao's fixed user/item feature tables, and user/item side fields: one config each
    # (split "train": all rows).
    for b in layout.datasets:
        for who, f in ((w, f"{w}_{t}.parquet") for t in ("features", "fields")
                       for w in ("user", "item")):  # fmt: skip
            if f in b.manifest["files"]:
                configs.append({"config_name": f"{b.name}-{who}-{f[len(who) + 1:-8]}",
                                "data_files": [{"split": "train", "path": f"data/{b.name}/{f}"}]})  # fmt: skip
    kinds = sorted({b.manifest.get("kind", "") for b in layout.datasets})
    return {
        "pretty_name": "Multi-domain recommendation benchmarks (mdrbench)",
        "license": "other",
        "license_name": "mdrbench-" + "-".join(k for k in kinds if k) + "-raw-data-terms",
        "license_link": "LICENSE.md",
        "task_categories": ["tabular-classification"],
        "tags": TAGS,
        "size_categories": [size_category(n)],
        "configs": configs,
        "dataset_info": infos,
    }


def licence_file(datasets: list[Built]) -> str:
    from mdrbench.builders.specs import AMAZON_LICENCE, TAOBAO_LICENCE

    kinds = {b.manifest.get("kind") for b in datasets}
    parts = ["# Licence\n", "The data in this repository is derived from these sources:\n"]
    if "amazon" in kinds:
        parts.append(f"- {AMAZON_LICENCE}")
    if "taobao" in kinds:
        parts.append(f"- {TAOBAO_LICENCE}")
    for b in datasets:  # the field's datasets and custom tables
        kind = b.manifest.get("kind")
        if kind == "custom":
            parts.append(f"- {b.name}: the publisher's own data, under the publisher's terms.")
        elif kind not in ("amazon", "taobao"):
            from mdrbench.builders.specs import FIELD_DATASETS

            if kind in FIELD_DATASETS:
                parts.append(f"- {b.name}: {FIELD_DATASETS.get(kind).licence}")
    parts.append(
        "\nThe construction of the benchmarks follows MAMDR (Luo et al., ICDE 2023). "
        "mdrbench's code, which built these files, is Apache-2.0; that licence does not "
        "extend to the data.\n"
    )
    return "\n".join(parts)


def _files_table(b: Built) -> str:
    rows = [
        f"| `data/{b.name}/{f}` | {i['bytes']:,} | `{i['sha256']}` |"
        for f, i in b.manifest["files"].items()
    ]
    return "| file | bytes | sha256 |\n|---|---:|---|\n" + "\n".join(rows)


def _build_command(b: Built, spec) -> str:
    m = b.manifest
    cmd = f"mdrbench build {b.name} --raw-dir RAW_DIR --seed {m.get('seed', 0)}"
    names = [d["name"] for d in m["domains"]]
    if spec is not None and names != spec.domain_names:
        cmd += ' --domains "' + ",".join(names) + '"'
    if m.get("on_bad_lines", "error") != "error":
        cmd += f" --on-bad-lines {m['on_bad_lines']}"
    return cmd


def _labels(manifest: dict) -> str:
    if all(d.get("ctr_ratio") is None for d in manifest["domains"]):  # a table with labels
        return "Labels as the source gives them (1 / 0), no sampled negatives."
    return ("Label 1 = click/review; 0 = a negative drawn per domain and user uniformly "
            "without replacement at the domain's CTR ratio.")  # fmt: skip


def hub_card(layout: Layout) -> str:
    """README.md of the repository: YAML header, then a body built from the manifests."""
    import yaml  # a dependency of huggingface_hub

    from mdrbench.builders.specs import AMAZON_CITATION, MAMDR_CITATION, TAOBAO_CITATION

    specs = _specs(layout.datasets)
    header = yaml.safe_dump(card_metadata(layout), sort_keys=False, allow_unicode=True)
    repo = layout.repo_id
    overview = "\n".join(
        f"| [{b.name}](#{b.name}) | {b.manifest['totals']['n_domains']} | "
        f"{b.manifest['totals']['n_train']:,} | {b.manifest['totals']['n_val']:,} | "
        f"{b.manifest['totals']['n_test']:,} | `{b.manifest_sha256}` |"
        for b in layout.datasets
    )
    sections = []
    for b in layout.datasets:
        m, spec = b.manifest, specs[b.name]
        features = (
            f"\n- Feature tables: `data/{b.name}/user_features.parquet`, "
            f"`data/{b.name}/item_features.parquet` (id + 128 float32 values), not part of the "
            f"splits above (configs `{b.name}-user-features`, `{b.name}-item-features`); join "
            "them on `user_id` / `item_id`."
            if any(f.endswith("_features.parquet") for f in m["files"])
            else ""
        )
        if m.get("fields"):
            from mdrbench.builders.card import fields_table

            features += ("\n- Side fields (user and item fields in `data/"
                         f"{b.name}/<owner>_fields.parquet`, row fields in the splits):\n\n"
                         + fields_table(m) + "\n")  # fmt: skip
        sections.append(
            f"""## {b.name}

{spec.description if spec else ""}

### How it was built

- By mdrbench {m.get("mdrbench_version", "?")} from the raw files listed below, spec version
  {m.get("spec_version", "?")}, seed {m.get("seed", "?")}: `{_build_command(b, spec)}`.
- {_labels(m)} Split: {describe_split(m)} The build's own card, `data/{b.name}/README.md`,
  gives every step.
- Columns: `user_id` int64, `item_id` int64, `domain_id` int16 (index into the domains
  below), `label` int8.{features}

### Statistics

{stats_tables(m)}

### Checksums

`manifest.json` sha256 (results name their build by it): `{b.manifest_sha256}`

{_files_table(b)}

Raw inputs:

| file | bytes | sha256 |
|---|---:|---|
"""
            + "\n".join(
                f"| {f} | {i['bytes']:,} | `{i['sha256']}` |"
                for f, i in m.get("raw_files", {}).items()
            )
        )
    kinds = {b.manifest.get("kind") for b in layout.datasets}
    cites = [MAMDR_CITATION]
    if "amazon" in kinds:
        cites.append(AMAZON_CITATION)
    if "taobao" in kinds:
        cites.append(TAOBAO_CITATION)
    first = layout.datasets[0].name
    return f"""---
{header}---

# Multi-domain recommendation benchmarks

The multi-domain recommendation (MDR) benchmarks of MAMDR (Luo et al., ICDE 2023), built
reproducibly by mdrbench {__version__}: click-through prediction
with one global user and item id space per dataset shared by all of its domains.

| dataset | domains | train | validation | test | manifest.json sha256 |
|---|---:|---:|---:|---:|---|
{overview}

## Use

With mdrbench (downloads, then re-hashes every file against its manifest):

```bash
mdrbench download {repo} --out data
mdrbench eval --dataset data/{first} --model mlp --method alternate --seeds 0,1,2
```

With the `datasets` library: `load_dataset("{repo}", "{first}")` (splits `train`,
`validation`, `test`; `domain_id` is a `ClassLabel` naming each domain). Taobao's feature
tables are the configs `<name>-user-features` and `<name>-item-features`.

With mdrbench's Python API (downloads the pinned build on first use, then verifies it):
`mdrbench.load_dataset("{first}")`.

{chr(10).join(sections)}

## Licence

See [LICENSE.md](LICENSE.md): {"; ".join(sorted(k for k in kinds if k))} raw data, each under
its source's terms.

## Citation

```bibtex
{(chr(10) * 2).join(cites)}
```
"""


# ---------------------------------------------------------------- dry run, upload, download


def write_folder(layout: Layout, out: os.PathLike | str) -> list[tuple[str, int]]:
    """Write exactly the files that would be uploaded into `out` (new or empty)."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--dry-run folder '{out}' exists and is not empty: pass a new folder")
    writable_dir(out.parent, "--dry-run's parent folder")
    with staged(out) as tmp:
        for rel, src in sorted(layout.files.items()):
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, Path):
                shutil.copyfile(src, dst)
            else:
                dst.write_text(src, encoding="utf-8")
    return [(rel, layout.size(rel)) for rel in sorted(layout.files)]


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a Hub call raises when the connection is refused, cut or times out (the HTTP
    client huggingface_hub uses differs between its versions)."""
    import importlib

    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    errs: list = [HfHubHTTPError, LocalEntryNotFoundError, OSError]
    for mod, name in (("httpx", "HTTPError"), ("httpx2", "HTTPError"),
                      ("requests", "RequestException")):  # fmt: skip
        try:
            errs.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def fetch_dataset(name: str, data_dir: os.PathLike | str) -> Path:
    """Download benchmark `name` from its pinned Hub home (the spec's `hub_repo` at
    `hub_revision`) into `data_dir/<name>/`, verified; only that dataset's files."""
    from mdrbench.builders.specs import DATASETS

    spec = DATASETS.get(name)
    return download(spec.hub_repo, data_dir, revision=spec.hub_revision, names=[name])[0]


def pinned_manifest(name: str) -> bytes:
    """The `manifest.json` of benchmark `name` at its pinned Hub home (the spec's `hub_repo`
    at `hub_revision`): one small file, which names the build (its sha256) that
    `fetch_dataset` would place, without downloading the data. A sweep's driver reads it
    when it has no copy of the dataset (docs/sweep.md)."""
    from huggingface_hub import hf_hub_download

    from mdrbench.builders.specs import DATASETS

    spec = DATASETS.get(name)
    at = f"{spec.hub_repo} at revision {spec.hub_revision}"
    try:
        f = hf_hub_download(spec.hub_repo, f"data/{name}/{MANIFEST}", repo_type="dataset",
                            revision=spec.hub_revision)  # fmt: skip
    except _network_errors() as exc:
        raise _hub_error(exc, f"reading the manifest of {name} from {at}", spec.hub_repo) from None
    return Path(f).read_bytes()


def ensure_dataset(
    name: str, expected_sha256: str | None = None, data_dir: os.PathLike | str | None = None
) -> Path:
    """The verified build of benchmark `name` in `data_dir` (default: this machine's data
    directory, `mdrbench.paths.default_data_dir`), fetched from its pinned Hub home
    (`fetch_dataset`) when it is not there: what a sweep's Ray task does on a node with no
    copy. Processes that call it at once on one machine share one download: each takes the
    lock `data_dir/.<name>.lock` (waiting for it), and whoever gets it second finds the
    first one's copy. A download that fails its checksums keeps nothing (`download`).

    `expected_sha256`: the manifest sha256 of the build wanted (results name their build by
    it). A copy in `data_dir` that is another build, or whose files do not match its
    manifest, is never replaced (it may be the user's): a UserError says what to do; so does
    a Hub build that is not the expected one."""
    from mdrbench.atomic import Lock, recover_swap
    from mdrbench.builders.manifest import verify
    from mdrbench.paths import default_data_dir

    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    target = data_dir / name

    def ready() -> bool:
        recover_swap(target)
        if not target.exists():
            return False
        sha = file_sha256(target / MANIFEST) if (target / MANIFEST).is_file() else None
        if expected_sha256 is not None and sha != expected_sha256:
            what = f"build {sha[:12]}..." if sha else f"no {MANIFEST}"
            raise UserError(
                f"{target} holds another copy of {name} ({what}), not the build "
                f"{expected_sha256[:12]}... wanted: move it away (then it is downloaded "
                "from the Hub), or pass the wanted build's folder."
            )
        problems = verify(target, cached=True)
        if problems:
            raise UserError(
                f"{target} does not match its manifest ({problems[0]}): move it away (then "
                f"it is downloaded again) or rebuild it (mdrbench build {name} --force)."
            )
        return True

    if ready():
        return target
    writable_dir(data_dir, "the data directory")
    with Lock(data_dir / f".{name}.lock", f"downloading {name}", wait=True):
        if not ready():  # nobody fetched it while this process waited for the lock
            fetch_dataset(name, data_dir)
    sha = file_sha256(target / MANIFEST)
    if expected_sha256 is not None and sha != expected_sha256:
        from mdrbench.builders.specs import DATASETS

        spec = DATASETS.get(name)
        raise UserError(
            f"the Hub's {name} ({spec.hub_repo} at revision {spec.hub_revision}, now in "
            f"{target}) is build {sha[:12]}..., not the build {expected_sha256[:12]}... "
            "wanted: give every node that build's folder instead."
        )
    return target


def _hub_error(exc: Exception, what: str, repo_id: str) -> UserError:
    """A Hub failure as one clear message (huggingface_hub's messages never hold the token)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, OfflineModeIsEnabled) or (status is None and constants.HF_HUB_OFFLINE):
        return UserError(f"{what} failed: HF_HUB_OFFLINE is set; unset it to reach the Hub")
    if isinstance(exc, RepositoryNotFoundError):
        hint = f"no dataset repository {repo_id} on the Hub, or it is private and your token cannot read it"
    elif isinstance(exc, RevisionNotFoundError):
        hint = (f"{repo_id} has no such revision (branch, tag or commit); pass an existing one "
                "with --revision")  # fmt: skip
    elif status in (401, 403):
        hint = "the Hub refused the token: check HF_TOKEN (or `hf auth login`) and its write access"
    else:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        hint = " ".join(lines[:2]) or type(exc).__name__
        if status is None:  # no HTTP answer: refused, cut, timed out
            hint = (f"cannot reach the Hub at {constants.ENDPOINT} ({type(exc).__name__}: "
                    f"{hint[:300]}). Check the network connection (and HF_ENDPOINT if set), "
                    "then run the command again")  # fmt: skip
    return UserError(f"{what} failed: {hint}")


def upload(
    layout: Layout, *, private: bool = False, message: str | None = None, tag: str | None = None
) -> str:
    """Create the dataset repo if missing and push every file in ONE commit; files the repo
    holds that the layout does not (an older build's) are deleted in that same commit.
    With `tag`, the commit is also tagged (the pinned revision `mdrbench download NAME`
    fetches, e.g. spec-2.0). Returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

    if not get_token():
        raise UserError(
            "no Hugging Face token: set HF_TOKEN to a token with write access, or run "
            "`hf auth login` once. (mdrbench never prints or stores it.)"
        )
    api = HfApi()
    repo = layout.repo_id
    try:
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        existing = api.list_repo_files(repo, repo_type="dataset")
        ops: list = [
            CommitOperationAdd(
                path_in_repo=rel,
                path_or_fileobj=str(src) if isinstance(src, Path) else src.encode("utf-8"),
            )
            for rel, src in sorted(layout.files.items())
        ]
        ops += [CommitOperationDelete(path_in_repo=p) for p in existing
                if p not in layout.files and p != ".gitattributes"]  # fmt: skip
        names = ", ".join(b.name for b in layout.datasets)
        info = api.create_commit(
            repo, ops, repo_type="dataset",
            commit_message=message or f"mdrbench {__version__}: publish {names}",
            commit_description="Built and verified by mdrbench; each data/<name>/manifest.json "
            "holds the sha256 of every file of its dataset.",
        )  # fmt: skip
        if tag:
            api.create_tag(repo, tag=tag, revision=info.oid, repo_type="dataset",
                           tag_message=f"mdrbench {__version__}: {names}")  # fmt: skip
    except _network_errors() as exc:
        raise _hub_error(exc, f"publishing to the Hub repo {repo}", repo) from None
    return info.commit_url


def download(
    repo_id: str,
    out: os.PathLike | str,
    *,
    revision: str | None = None,
    force: bool = False,
    names: list[str] | None = None,
) -> list[Path]:
    """Fetch a published repo (with `names`, only those datasets' files: `allow_patterns`),
    verify every dataset against its manifest, and move each into `out/<name>/` (a data
    directory mdrbench reads). Nothing is left in `out` when a checksum fails. Returns the
    dataset folders."""
    from huggingface_hub import snapshot_download

    from mdrbench.atomic import swap_into_place, temp_dir

    check_repo_id(repo_id)
    out = writable_dir(Path(out))
    tmp = temp_dir(out, ".hub-download")  # and what a killed download left goes
    try:
        at = f"{repo_id}" + (f" at revision {revision}" if revision else "")
        patterns = [f"data/{n}/*" for n in names] if names else None
        try:
            kw = {"allow_patterns": patterns} if patterns else {}
            snapshot_download(repo_id, repo_type="dataset", revision=revision, local_dir=tmp, **kw)
        except _network_errors() as exc:
            raise _hub_error(exc, f"downloading {at}", repo_id) from None
        folders = sorted(p.parent for p in (tmp / "data").glob(f"*/{MANIFEST}"))
        missing = [n for n in names or () if n not in {f.name for f in folders}]
        if missing:
            raise UserError(
                f"{at} holds no dataset {', '.join(missing)} (no data/<name>/{MANIFEST}); "
                f"it holds: {', '.join(f.name for f in folders) or 'none'}"
            )
        if not folders:
            raise UserError(
                f"{repo_id} holds no mdrbench dataset (no data/<name>/{MANIFEST}): "
                "was it published with `mdrbench publish`?"
            )
        problems = []
        for f in folders:
            problems += [f"data/{f.name}/{msg}" for msg in verify_dataset(f)]
            name = load_manifest(f)["name"]
            if name != f.name:
                problems.append(f"data/{f.name}/{MANIFEST}: names dataset '{name}', not '{f.name}'")
        if problems:
            raise UserError(
                f"{repo_id}: downloaded files do not match their manifest; nothing was kept:\n  "
                + "\n  ".join(problems)
            )
        clash = [out / f.name for f in folders if (out / f.name).exists()]
        if clash and not force:
            raise UserError(
                f"{', '.join(map(str, clash))} already exist(s): pass --force to replace, "
                "or --out another folder"
            )
        placed = []
        for f in folders:
            swap_into_place(f, out / f.name)
            placed.append(out / f.name)
        return placed
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
