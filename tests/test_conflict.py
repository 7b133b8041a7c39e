"""The domain-conflict matrix (Eq. 9), its heatmaps and `mdrbench conflict`."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn
from train_fixtures import write_dataset

from mdrbench.cli import cli
from mdrbench.conflict import (
    color,
    compute_conflict,
    conflict_matrix,
    domain_gradients,
    heatmap_png,
    heatmap_svg,
    load_checkpoint,
)
from mdrbench.data import DatasetInfo, MDRData, Split, load_dataset
from mdrbench.errors import UserError

TINY = [
    "--set",
    "emb_dim=8",
    "--set",
    "hidden=[16,8]",
    "--set",
    "batch_size=64",
    "--set",
    "device=cpu",
]

DOMAINS = [
    [(1, 2, 1), (3, 1, 0), (2, 5, 1), (4, 4, 0)],
    [(5, 1, 0), (1, 6, 1), (2, 2, 1)],
    [(6, 3, 1), (2, 7, 0), (7, 1, 0), (3, 3, 1), (1, 1, 0)],
]


def hand_data() -> MDRData:
    rows = [(u, i, d, y) for d, dom in enumerate(DOMAINS) for (u, i, y) in dom]
    t = torch.tensor(rows, dtype=torch.int64)
    offsets = np.cumsum([0] + [len(d) for d in DOMAINS]).tolist()
    split = Split(t[:, 0], t[:, 1], t[:, 2], t[:, 3].float(), offsets)
    info = DatasetInfo("hand", "amazon", 10, 10, 3, ("D0", "D1", "D2 <&>"))
    return MDRData(info=info, splits={"train": split, "val": split, "test": split})


class LinearCTR(nn.Module):
    """logit = w . (user, item) / 10 + b, plus a head per domain that only its rows use."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.heads = nn.Parameter(torch.zeros(3))  # one tensor, every domain reaches it
        self.own0 = nn.Parameter(torch.zeros(1))  # only domain 0 reaches it
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.5, -0.3]]))
            self.lin.bias.fill_(0.1)

    def forward(self, batch):
        x = torch.stack([batch["user_id"], batch["item_id"]], 1).float() / 10
        d = batch["domain_id"]
        extra = torch.where(d == 0, self.own0.expand_as(d.float()), torch.zeros_like(d.float()))
        return self.lin(x).squeeze(-1) + self.heads[d] + extra


def hand_grad(domain) -> np.ndarray:
    th = np.array([0.5, -0.3, 0.1])
    x = np.array([[u / 10, i / 10] for u, i, _ in domain])
    y = np.array([lab for _, _, lab in domain], dtype=np.float64)
    r = 1 / (1 + np.exp(-(x @ th[:2] + th[2]))) - y
    return np.concatenate([x.T @ r / len(y), [r.mean()]])


def test_conflict_matrix_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    m = conflict_matrix(g)
    assert m["inner"] == [[1.0, -1.0, 0.0], [-1.0, 2.0, 2.0], [0.0, 2.0, 4.0]]
    c = m["cosine"]
    assert c[0][1] == pytest.approx(-1 / math.sqrt(2)) and c[1][2] == pytest.approx(
        1 / math.sqrt(2)
    )
    assert c[0][2] == 0.0 and c[0][0] == pytest.approx(1.0)
    s = m["summary"]
    assert (s["n_pairs"], s["conflicting_pairs"]) == (3, 1)
    assert s["o_c"] == pytest.approx(9.0) and s["o_c_off_diagonal"] == pytest.approx(2.0)
    assert s["mean_cosine"] == pytest.approx(0.0) and s["min_cosine"] == pytest.approx(
        -0.7071, abs=1e-4
    )
    zero = conflict_matrix(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert zero["cosine"][0][1] is None  # undefined, not NaN in JSON
    json.dumps(zero)


def test_domain_gradients_by_hand_and_only_shared_tensors():
    data = hand_data()
    net = LinearCTR()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g, info = domain_gradients(net, data, params="all")
    assert info["params_used"] == ["heads", "lin.weight", "lin.bias"]  # model order
    assert info["params_left_out"] == {"own0": "gradient from 1 domain(s)"}
    assert info["rows_per_domain"] == [4, 3, 5]
    for d in range(3):
        want = hand_grad(DOMAINS[d])
        heads = np.zeros(3)
        heads[d] = want[2]  # d(loss)/d(heads[d]) = mean residual = d/db
        np.testing.assert_allclose(g[d, :3].numpy(), heads, atol=1e-6)
        np.testing.assert_allclose(g[d, 3:].numpy(), want, atol=1e-6)
    for k, v in net.state_dict().items():  # the model is not touched
        assert torch.equal(v, before[k]) and net.training
    assert all(p.grad is None for p in net.parameters())
    sub, _ = domain_gradients(net, data, params="re:^lin\\.", rows=2, seed=1)
    assert sub.shape == (3, 3)  # 2 sampled rows per domain: a different gradient
    assert not torch.allclose(sub, g[:, 3:])
    with pytest.raises(UserError, match="selects no trainable"):
        domain_gradients(net, data, params="re:nothing")


def test_compute_conflict_is_json_and_deterministic():
    data = hand_data()
    a = compute_conflict(LinearCTR(), data, params="all")
    b = compute_conflict(LinearCTR(), data, params="all")
    assert json.dumps(a) == json.dumps(b)
    assert a["domains"] == ["D0", "D1", "D2 <&>"] and len(a["cosine"]) == 3


def _png_pixels(png: bytes):
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(png):
        (n,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + n]
        (crc,) = struct.unpack(">I", png[at + 8 + n : at + 12 + n])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + n
    w, h, depth, ctype = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    raw = zlib.decompress(chunks[b"IDAT"])
    assert (depth, ctype) == (8, 2) and len(raw) == h * (1 + 3 * w)
    return w, h, raw


def test_heatmaps():
    m = [[1.0, -1.0, None], [-1.0, 1.0, 0.0], [None, 0.0, 1.0]]
    w, h, raw = _png_pixels(heatmap_png(m, cell=5))
    assert (w, h) == (15, 15)
    row0 = raw[1 : 1 + 3 * w]
    assert tuple(row0[0:3]) == color(1.0) == (178, 24, 43)
    assert tuple(row0[15:18]) == color(-1.0) == (33, 102, 172)
    assert tuple(row0[30:33]) == color(None)
    assert color(0.0) == (247, 247, 247)
    svg = heatmap_svg(m, ["a", "b<", "c&"], "t <x>")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<title>") == 9 and "b&lt;" in svg and "t &lt;x&gt;" in svg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("conflict"), "amazon", n_domains=3)


def _run(args):
    res = CliRunner().invoke(cli, args, catch_exceptions=True)
    return res


def test_cli_writes_json_and_heatmaps(dataset, tmp_path):
    out = tmp_path / "c"
    res = _run(["conflict", "--dataset", str(dataset), "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "conflict.json").read_text())
    assert rec["model"] == "mlp" and len(rec["cosine"]) == 3 and rec["checkpoint"] is None
    assert {p.name for p in out.iterdir()} == {"conflict.json", "conflict.svg", "conflict.png"}
    assert "initialisation" in res.output and "conflicting" in res.output


def test_cli_compare_before_and_after(dataset, tmp_path):
    out = tmp_path / "c"
    args = ["conflict", "--dataset", str(dataset), "--out", str(out), "--compare"]
    res = _run(
        [*args, "--baseline", "alternate", "--epochs", "2", "-q", *TINY, "--set", "beta=0.5"]
    )
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "conflict.json").read_text())
    assert rec["after"]["method"] == "dn" and rec["baseline"]["method"] == "alternate"
    assert rec["after"]["config"]["framework"]["beta"] == 0.5
    assert rec["before"]["inner"] != rec["after"]["inner"]
    names = {p.name for p in out.iterdir()}
    for stem in ("conflict_before", "conflict_after", "conflict_baseline"):
        assert {f"{stem}.svg", f"{stem}.png"} <= names
    assert "after dn" in res.output and "after alternate" in res.output


def test_checkpoint_formats(dataset, tmp_path):
    from mdrbench.models import build_model

    data = load_dataset(dataset)
    torch.manual_seed(5)
    net = build_model("mlp", data.info, emb_dim=8, hidden=[16, 8])
    plain, fw_style = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(net.state_dict(), plain)
    torch.save({"model": net.state_dict(), "offsets": []}, fw_style)
    for f in (plain, fw_style):
        other = build_model("mlp", data.info, emb_dim=8, hidden=[16, 8])
        load_checkpoint(other, f)
        for k, v in net.state_dict().items():
            assert torch.equal(other.state_dict()[k], v)
    out = tmp_path / "o"
    args = ["conflict", "--dataset", str(dataset), "--out", str(out), *TINY]
    res = _run([*args, "--checkpoint", str(plain)])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "conflict.json").read_text())
    assert rec["checkpoint"] == str(plain)
    assert rec["cosine"] == compute_conflict(net, data)["cosine"]


def test_cli_user_errors(dataset, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not torch")
    base = ["conflict", "--dataset", str(dataset), "--out", str(tmp_path / "o")]
    for extra, msg in (
        (["--checkpoint", str(bad)], "not a checkpoint"),
        (["--rows", "-1"], "--rows"),
        (["--baseline", "alternate"], "--baseline needs --compare"),
        (["--model", "mlpp"], "did you mean 'mlp'"),
        (["--params", "re:zzz"], "selects no trainable"),
    ):
        res = _run([*base, *extra, *TINY])
        assert isinstance(res.exception, UserError), (extra, res.output)
        assert msg in str(res.exception)
    wrong = tmp_path / "wrong.pt"
    torch.save({"x": torch.zeros(2)}, wrong)
    res = _run([*base, "--checkpoint", str(wrong), *TINY])
    assert isinstance(res.exception, UserError) and "does not fit" in str(res.exception)


def test_cli_module_imports_no_torch():
    code = "import sys, mdrbench.cli.conflict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
