"""A built dataset (docs/format.md) as in-memory tensors, and batches by index slicing.

Rows of a split are stored sorted by domain, so a domain's rows are one contiguous slice
(`Split.rows(d)`). A batch is a dict of tensors gathered with one index tensor: `user_id`,
`item_id`, `domain_id` (int64), `label` (float32), for datasets with fixed features
(Taobao) the `user_features`/`item_features` rows of the batch, and every declared side
field under its own name (categorical: int64 codes; dense: float32; docs/format.md, "Side
fields"): a user or item field gathered from its per-id table by the batch's ids, a row
field from the split's column. No per-sample Python.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mdrbench.errors import UserError
from mdrbench.paths import resolve_dataset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FieldInfo:
    """A side field the manifest declares: `kind` categorical (codes 0..cardinality-1) or
    dense (float32, one value), `owner` user, item or row."""

    name: str
    kind: str
    owner: str
    cardinality: int | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset to build itself."""

    name: str
    kind: str
    n_users: int
    n_items: int
    n_domains: int
    domain_names: tuple[str, ...]
    feature_dim: int = 0  # width of the fixed user/item features; 0 = none (ids are embedded)
    manifest_sha256: str = ""
    path: str = ""
    fields: tuple[FieldInfo, ...] = ()  # side fields, in the manifest's order

    @property
    def has_features(self) -> bool:
        return self.feature_dim > 0

    @property
    def categorical_fields(self) -> tuple[FieldInfo, ...]:
        return tuple(f for f in self.fields if f.kind == "categorical")

    @property
    def dense_fields(self) -> tuple[FieldInfo, ...]:
        return tuple(f for f in self.fields if f.kind == "dense")


@dataclass
class Split:
    """One split's rows, sorted by domain. Columns live on `device`."""

    user_id: torch.Tensor  # int64 [N]
    item_id: torch.Tensor  # int64 [N]
    domain_id: torch.Tensor  # int64 [N]
    label: torch.Tensor  # float32 [N]
    offsets: list[int]  # rows of domain d are offsets[d]:offsets[d+1]
    user_features: torch.Tensor | None = None  # float32 [n_users, F], shared with the dataset
    item_features: torch.Tensor | None = None
    # Side fields: row fields' columns [N] of this split; user and item fields' per-id
    # tables [n_users] / [n_items], shared with the dataset.
    row_fields: dict[str, torch.Tensor] = field(default_factory=dict)
    user_fields: dict[str, torch.Tensor] = field(default_factory=dict)
    item_fields: dict[str, torch.Tensor] = field(default_factory=dict)
    # Called with the row count of every batch `take` makes (the trainer's progress bar
    # counts training rows with it during an epoch); None: nothing to call.
    on_take: Callable[[int], None] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def n_domains(self) -> int:
        return len(self.offsets) - 1

    def rows(self, d: int) -> slice:
        return slice(self.offsets[d], self.offsets[d + 1])

    def n_rows(self, d: int) -> int:
        return self.offsets[d + 1] - self.offsets[d]

    def take(self, index: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """The batch of rows `index` (an index tensor, or a slice: views, no copy)."""
        batch = {
            "user_id": self.user_id[index],
            "item_id": self.item_id[index],
            "domain_id": self.domain_id[index],
            "label": self.label[index],
        }
        if self.user_features is not None:
            batch["user_features"] = self.user_features[batch["user_id"]]
        if self.item_features is not None:
            batch["item_features"] = self.item_features[batch["item_id"]]
        for name, table in self.user_fields.items():
            batch[name] = table[batch["user_id"]]
        for name, table in self.item_fields.items():
            batch[name] = table[batch["item_id"]]
        for name, col in self.row_fields.items():
            batch[name] = col[index]
        if self.on_take is not None:
            self.on_take(int(batch["label"].shape[0]))
        return batch

    def batches(
        self,
        batch_size: int,
        domain: int | None = None,
        generator: torch.Generator | None = None,
        buffer: int = 0,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches over one domain's rows (or all rows when `domain` is None).

        With a generator the rows are shuffled (torch.randperm, so a seed fixes the order;
        within a domain, `buffer` > 0 shuffles through a buffer of that many rows instead,
        as tf.data: `buffered_order`); without, they come in stored order as slices.
        """
        if domain is None:
            start, stop = 0, len(self)
        else:
            start, stop = self.offsets[domain], self.offsets[domain + 1]
        n = stop - start
        if generator is None:
            for i in range(start, stop, batch_size):
                yield self.take(slice(i, min(i + batch_size, stop)))
            return
        if domain is not None and buffer > 0:
            perm = buffered_order(n, buffer, generator)
        else:
            perm = torch.randperm(n, generator=generator)
        if start:
            perm += start
        perm = perm.to(self.label.device)
        for i in range(0, n, batch_size):
            yield self.take(perm[i : i + batch_size])


def buffered_order(n: int, buffer: int, generator: torch.Generator) -> torch.Tensor:
    """The order in which tf.data's `shuffle(buffer)` emits inputs 0..n-1 (one epoch),
    drawn from the same distribution without a loop over rows. tf.data fills a buffer with
    the first `buffer` inputs; each step emits one of the buffered inputs chosen uniformly
    and puts the next input in its place; once the input is exhausted it emits what is
    left in uniformly random order. With slot s_t (uniform) chosen at step t, the input
    emitted is the one put into s_t at the last earlier step t' choosing s_t (input
    buffer + t'), or the slot's first input (s_t) if none did: one stable sort by slot
    finds every t'. `buffer` >= n: a uniform permutation (torch.randperm)."""
    if n <= buffer:
        return torch.randperm(n, generator=generator)
    steps = n - buffer
    slot = torch.randint(buffer, (steps,), generator=generator)
    small = torch.int16 if buffer <= torch.iinfo(torch.int16).max else torch.int32
    by_slot, at = torch.sort(slot.to(small), stable=True)  # grouped by slot, in time order
    by_slot = by_slot.long()
    first = torch.ones(steps, dtype=torch.bool)
    first[1:] = by_slot[1:] != by_slot[:-1]  # a slot's first choice: its first input
    prev = torch.empty_like(at)
    prev[1:] = at[:-1] + buffer  # the input the group's previous step put in
    emitted = torch.empty_like(at)
    emitted[at] = torch.where(first, by_slot, prev)
    last = torch.ones(steps, dtype=torch.bool)
    last[:-1] = by_slot[:-1] != by_slot[1:]
    left = torch.arange(buffer)  # what the slots hold when the input is exhausted
    left[by_slot[last]] = at[last] + buffer
    return torch.cat([emitted, left[torch.randperm(buffer, generator=generator)]])


@dataclass
class MDRData:
    info: DatasetInfo
    splits: dict[str, Split] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.train.label.device

    def to(self, device: str | torch.device) -> MDRData:
        """The same data on `device` (a new object; feature tables moved once)."""
        device = torch.device(device)
        if self.device == device:
            return self
        some = next(iter(self.splits.values()))
        uf = some.user_features.to(device) if some.user_features is not None else None
        itf = some.item_features.to(device) if some.item_features is not None else None
        user_fields = {k: v.to(device) for k, v in some.user_fields.items()}
        item_fields = {k: v.to(device) for k, v in some.item_fields.items()}
        splits = {
            name: Split(
                s.user_id.to(device),
                s.item_id.to(device),
                s.domain_id.to(device),
                s.label.to(device),
                list(s.offsets),
                uf,
                itf,
                row_fields={k: v.to(device) for k, v in s.row_fields.items()},
                user_fields=user_fields,
                item_fields=item_fields,
            )
            for name, s in self.splits.items()
        }
        return MDRData(info=self.info, splits=splits, manifest=self.manifest)

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def val(self) -> Split:
        return self.splits["val"]

    @property
    def test(self) -> Split:
        return self.splits["test"]


# ----------------------------------------------------------------------------- loading


def manifest_sha256(path: str | os.PathLike) -> str:
    """sha256 of a dataset folder's manifest.json bytes (how a result names its dataset)."""
    return hashlib.sha256((Path(path) / "manifest.json").read_bytes()).hexdigest()


def load_dataset(
    name_or_path: str | os.PathLike, device: str | torch.device = "cpu", check: bool = True
) -> MDRData:
    """Load a built dataset (a folder, or a name under the default data directory).

    `check`: first compare every file with the manifest (sizes and sha256; files unchanged
    since their last check are not re-hashed): a damaged or edited dataset is refused."""
    import pyarrow.parquet as pq

    from mdrbench.builders.manifest import check_dataset

    folder = resolve_dataset(name_or_path)
    if check:
        check_dataset(folder)
    raw = (folder / "manifest.json").read_bytes()
    try:
        manifest = json.loads(raw)
        domains = sorted(manifest["domains"], key=lambda d: d["id"])
        totals = manifest["totals"]
        names = tuple(str(d["name"]) for d in domains)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{folder / 'manifest.json'} is not a dataset manifest: {exc}") from None
    if [d["id"] for d in domains] != list(range(len(domains))):
        raise UserError(f"{folder / 'manifest.json'}: domain ids must be 0..n-1")
    n_users, n_items = int(totals["n_users"]), int(totals["n_items"])

    feats = {}
    for who, n in (("user", n_users), ("item", n_items)):
        f = folder / f"{who}_features.parquet"
        if f.is_file():
            feats[who] = _load_features(pq.read_table(f), f"{who}_id", n, f)
    feature_dim = int(feats["user"].shape[1]) if "user" in feats else 0
    if feats and ("user" not in feats or "item" not in feats):
        raise UserError(f"{folder}: needs both user_features.parquet and item_features.parquet")
    if feats and feats["item"].shape[1] != feature_dim:
        raise UserError(f"{folder}: user and item features differ in width")

    fields = _declared_fields(manifest, folder)
    info = DatasetInfo(
        name=str(manifest.get("name", folder.name)),
        kind=str(manifest.get("kind", "")),
        n_users=n_users,
        n_items=n_items,
        n_domains=len(domains),
        domain_names=names,
        feature_dim=feature_dim,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        path=str(folder),
        fields=fields,
    )
    device = torch.device(device)
    uf = feats["user"].to(device) if feats else None
    itf = feats["item"].to(device) if feats else None
    owned = {
        who: _load_owned_fields(folder, who, [f for f in fields if f.owner == who], n, device)
        for who, n in (("user", n_users), ("item", n_items))
    }
    row = [f for f in fields if f.owner == "row"]
    data = MDRData(info=info, manifest=manifest)
    for split in SPLITS:
        f = folder / f"{split}.parquet"
        if not f.is_file():
            raise UserError(f"{folder}: missing {split}.parquet")
        names = ["user_id", "item_id", "domain_id", "label", *(x.name for x in row)]
        try:
            t = pq.read_table(f, columns=names)
        except (KeyError, ValueError) as exc:  # a declared row field absent
            raise UserError(f"{f}: lacks a column the manifest declares ({exc})") from None
        cols = {c: t.column(c).to_numpy() for c in t.column_names}
        data.splits[split] = _make_split(cols, info, uf, itf, device, f)
        data.splits[split].user_fields = owned["user"]
        data.splits[split].item_fields = owned["item"]
    return data


def _declared_fields(manifest: dict, folder: Path) -> tuple[FieldInfo, ...]:
    try:
        fields = tuple(
            FieldInfo(str(f["name"]), str(f["kind"]), str(f["owner"]),
                      None if f.get("cardinality") is None else int(f["cardinality"]))  # fmt: skip
            for f in manifest.get("fields") or []
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{folder / 'manifest.json'}: malformed 'fields' ({exc})") from None
    for f in fields:
        if f.kind not in ("categorical", "dense") or f.owner not in ("user", "item", "row") or (
            f.kind == "categorical" and not (f.cardinality or 0) > 0
        ):
            raise UserError(f"{folder / 'manifest.json'}: field {f} is not a valid declaration")
    return fields


def _field_tensor(values: np.ndarray, f: FieldInfo, path: Path, device) -> torch.Tensor:
    if f.kind == "dense":
        v = np.array(values, dtype=np.float32, copy=True)
        if not np.isfinite(v).all():
            raise UserError(f"{path}: field '{f.name}' holds NaN or infinite values")
        return torch.from_numpy(v).to(device)
    v = np.array(values, dtype=np.int64, copy=True)
    if v.size and (v.min() < 0 or v.max() >= f.cardinality):
        raise UserError(f"{path}: field '{f.name}' has codes outside 0..{f.cardinality - 1}")
    return torch.from_numpy(v).to(device)


def _load_owned_fields(folder: Path, who: str, fields: list[FieldInfo], n: int, device) -> dict:
    """{name: tensor [n]} of the user (item) fields, from `<who>_fields.parquet`."""
    if not fields:
        return {}
    import pyarrow.parquet as pq

    path = folder / f"{who}_fields.parquet"
    if not path.is_file():
        raise UserError(f"{folder}: missing {path.name}, which the manifest's fields need")
    t = pq.read_table(path)
    ids = t.column(f"{who}_id").to_numpy()
    if len(ids) != n or not np.array_equal(ids, np.arange(n)):
        raise UserError(f"{path}: needs one row per {who}_id 0..{n - 1}, in order")
    out = {}
    for f in fields:
        if f.name not in t.column_names:
            raise UserError(f"{path}: no column '{f.name}' (declared in the manifest)")
        out[f.name] = _field_tensor(t.column(f.name).to_numpy(), f, path, device)
    return out


def _load_features(table, id_col: str, n: int, path: Path) -> torch.Tensor:
    import pyarrow as pa

    col = table.column("features").combine_chunks()
    if not pa.types.is_fixed_size_list(col.type):
        raise UserError(f"{path}: 'features' must be fixed_size_list<float32>")
    width = col.type.list_size
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    values = values.reshape(-1, width)
    if not np.isfinite(values).all():
        raise UserError(
            f"{path}: features hold NaN or infinite values; rebuild the dataset with this "
            "mdrbench (it refuses such raw lines)."
        )
    ids = table.column(id_col).to_numpy()
    if len(ids) == n and np.array_equal(ids, np.arange(n)):
        return torch.from_numpy(np.array(values, copy=True))
    if len(ids) and (ids.min() < 0 or ids.max() >= n):
        raise UserError(f"{path}: {id_col} outside 0..{n - 1}")
    out = np.zeros((n, width), dtype=np.float32)  # ids without a row get zero features
    out[ids] = values
    return torch.from_numpy(out)


def _make_split(cols, info: DatasetInfo, uf, itf, device, path: Path) -> Split:
    dom = cols["domain_id"].astype(np.int64)
    if dom.size and (np.diff(dom) < 0).any():  # the format sorts by domain; be tolerant
        order = np.argsort(dom, kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        dom = dom[order]
    if dom.size and (dom.min() < 0 or dom.max() >= info.n_domains):
        raise UserError(f"{path}: domain_id outside 0..{info.n_domains - 1}")
    for c, n in (("user_id", info.n_users), ("item_id", info.n_items)):
        v = cols[c]
        if v.size and (v.min() < 0 or v.max() >= n):
            raise UserError(f"{path}: {c} outside 0..{n - 1} (manifest totals)")
    offsets = np.searchsorted(dom, np.arange(info.n_domains + 1)).tolist()

    def t(x, dtype):  # a writable copy (arrow's arrays are read-only)
        return torch.from_numpy(np.array(x, dtype=dtype, copy=True)).to(device)

    return Split(
        user_id=t(cols["user_id"], np.int64),
        item_id=t(cols["item_id"], np.int64),
        domain_id=t(dom, np.int64),
        label=t(cols["label"], np.float32),
        offsets=offsets,
        user_features=uf,
        item_features=itf,
        row_fields={
            f.name: _field_tensor(cols[f.name], f, path, device)
            for f in info.fields
            if f.owner == "row"
        },
    )
