"""Issue 20's models (mdrbench/models/scenario.py): each one's distinctive mechanism computed
by hand on a tiny input, gradients reaching every parameter, training-time state (buffers)
under the frameworks, the Scenario-Wise Rec profile, and `mdrbench eval` with alternate and
mamdr on a tiny synthetic taobao-10. Every framework x every model trains one epoch in
tests/test_frameworks.py; DN with beta = 1 equals alternate there too.

MODELS_TESTED lists the models this file covers (for tests/test_registry_coverage.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from train_fixtures import tiny_overrides

from mdrbench.baselines import swr
from mdrbench.config import TrainConfig
from mdrbench.data import DatasetInfo
from mdrbench.errors import UserError
from mdrbench.frameworks import FRAMEWORKS, Context, specific_param_names
from mdrbench.frameworks.params import Snapshot
from mdrbench.models import MODELS, build_model
from mdrbench.trainer import train

MODELS_TESTED = ("sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur", "m3oe")


def info(n_domains: int = 2, n_users: int = 5, n_items: int = 4) -> DatasetInfo:
    names = tuple(f"D{d}" for d in range(n_domains))
    return DatasetInfo("hand", "amazon", n_users, n_items, n_domains, names)


def hand_batch(domains=(0, 1, 1, 0, 1)) -> dict:
    n = len(domains)
    return {
        "user_id": torch.arange(n) % 5,
        "item_id": (torch.arange(n) * 3) % 4,
        "domain_id": torch.tensor(domains),
        "label": torch.zeros(n),
    }


def model(name: str, n_domains: int = 2, **cfg):
    torch.manual_seed(0)
    net = build_model(name, info(n_domains), emb_dim=2, dropout=0.0, **cfg)
    with torch.no_grad():  # embeddings of a size that makes every mechanism matter
        for emb in (net.inputs.user, net.inputs.item, net.inputs.domain):
            emb.weight.normal_(0.0, 1.0)
    return net.eval()


def fields(net, batch) -> torch.Tensor:
    """[B, 3, D] user, item, domain: looked up here, not through the model."""
    i = net.inputs
    return torch.stack(
        [i.user.weight[batch["user_id"]], i.item.weight[batch["item_id"]],
         i.domain.weight[batch["domain_id"]]], dim=1,
    )  # fmt: skip


def dense(layer, x):
    return x @ layer.weight.T + layer.bias


# ----------------------------------------------------------------------------- mechanisms


@pytest.mark.parametrize("batch_norm", [False, True])
def test_sarnet_expert_gating_by_hand(batch_norm):
    """x_s = x * w_d + b_d; experts (shared, then domain d's) e_j = [BN_j](x_s) W_j + b_j;
    g = softmax(W_g x_s + b_g); logit = head(MLP(sum_j g_j e_j)): expert by expert."""
    net = model("sarnet", n_shared_experts=2, n_specific_experts=2, expert_dim=3, hidden=[2],
                batch_norm=batch_norm)  # fmt: skip
    if batch_norm:
        for bank in [net.shared, *net.specific]:
            with torch.no_grad():
                bank.norm.running_mean.normal_()
                bank.norm.running_var.uniform_(0.5, 2.0)
                bank.gamma.normal_()
                bank.beta.normal_()
    b = hand_batch()
    with torch.no_grad():
        x = fields(net, b).flatten(1)
        out = net(b)
        for r in range(len(x)):
            d = int(b["domain_id"][r])
            xs = x[r] * net.scale[d] + net.shift[d]
            experts = []
            for bank in (net.shared, net.specific[d]):
                h = xs
                for j in range(bank.weight.shape[0]):
                    if batch_norm:
                        nrm = bank.norm
                        h = (xs - nrm.running_mean) / torch.sqrt(nrm.running_var + nrm.eps)
                        h = h * bank.gamma[j] + bank.beta[j]
                    experts.append(h @ bank.weight[j] + bank.bias[j])
            g = torch.softmax(dense(net.gate, xs), 0)
            mixed = sum(g[j] * experts[j] for j in range(len(experts)))
            lin = net.mlp[0]
            hidden = lin(mixed)
            if batch_norm:
                hidden = net.mlp[1](hidden.unsqueeze(0))[0]
            want = dense(net.head, torch.relu(hidden))
            assert float(out[r]) == pytest.approx(float(want), abs=1e-5)


def test_m2m_meta_unit_by_hand():
    """Meta attention and meta tower with weights generated from the scenario knowledge z:
    a_i = v . act([E_i, t] W(z) + b(z)), r = sum_i softmax(a)_i E_i,
    r <- act(r W'(z) + b'(z) + r); checked row by row, expert by expert."""
    net = model("m2m", n_experts=3, expert_dim=2, heads=1, ff_dim=4, encoder_layers=1,
                hidden=[2])  # fmt: skip
    with torch.no_grad():
        net.v.normal_()
    b = hand_batch()
    slope = net.cfg.leaky_slope

    def act(t):
        return F.leaky_relu(t, slope)

    with torch.no_grad():
        out = net(b)
        e = fields(net, b)
        enc = net.encoder(e).flatten(1)
        for r in range(len(out)):
            s = e[r, 2]  # the domain field
            z = act(dense(net.scenario_mlp[0], s))
            t = act(dense(net.task_mlp[0], s))
            w = act(dense(net.att_w[0], z)).view(4, 4)
            bias = act(dense(net.att_b[0], z))
            experts = [
                act(enc[r] @ net.experts.weights[0][i] + net.experts.biases[0][i, 0])
                for i in range(3)
            ]
            scores = torch.stack([act(torch.cat([E, t]) @ w + bias) @ net.v for E in experts])
            alpha = torch.softmax(scores, 0)
            rep = sum(alpha[i] * experts[i] for i in range(3))
            tw = act(dense(net.tower_w[0][0], z)).view(2, 2)
            tb = act(dense(net.tower_b[0][0], z))
            rep = act(rep @ tw + tb + rep)
            want = dense(net.head, torch.relu(dense(net.mlp[0], rep)))
            assert float(out[r]) == pytest.approx(float(want), abs=1e-5)


@pytest.mark.parametrize("sign", ["step", "sign"])
def test_adasparse_neuron_weighting_by_hand(sign):
    """Fusion form: p = beta sigmoid(alpha v), pi = p 1[p >= eps] (SWR: p sign(p - eps));
    a neuron whose p falls below eps is pruned (0), or negated with SWR's sign."""
    eps = 1.0  # p is in (0, 2): about half the factors fall below it
    net = model("adasparse", hidden=[3], sign=sign, epsilon=eps)
    with torch.no_grad():
        for pruner in net.pruners:
            pruner.weight.normal_()
    b = hand_batch()
    e = fields(net, b).detach()
    s, a = e[:, 2], e[:, :2].flatten(1)
    alpha = float(net.alpha)
    v = torch.cat([s, a], 1) @ net.pruners[0].weight.T
    p = net.cfg.factor_max * torch.sigmoid(alpha * v)
    pi = p * ((p >= eps).float() if sign == "step" else torch.sign(p - eps))
    with torch.no_grad():
        assert torch.allclose(net.factors(0, s, a), pi, atol=1e-6)
        assert (pi != 0).any() and ((pi == 0).any() if sign == "step" else (pi < 0).any())
        h = torch.relu(dense(net.layers[0][0], torch.cat([s, a * pi], 1)))
        v1 = torch.cat([s, h], 1) @ net.pruners[1].weight.T
        p1 = net.cfg.factor_max * torch.sigmoid(alpha * v1)
        h = h * p1 * ((p1 >= eps).float() if sign == "step" else torch.sign(p1 - eps))
        assert torch.allclose(net(b), dense(net.head, h).squeeze(-1), atol=1e-5)
    # alpha anneals with training forward passes only
    net.train()
    net(b)
    net(b)
    assert float(net.alpha) == pytest.approx(alpha + 2 * net.cfg.delta_alpha)
    net.eval()
    net(b)
    assert float(net.alpha) == pytest.approx(alpha + 2 * net.cfg.delta_alpha)


def test_adaptdhm_routing_by_hand():
    """One routing iteration (m = 0.5): r = softmax(x c^T), c <- normalize(m c + (1 - m)
    r^T x), each row to argmax x c^T; the logit uses its cluster's W_shared * W_k layers.
    Evaluation reads the centres and leaves them."""
    net = model("adaptdhm", hidden=[3], n_clusters=2, routing_iters=1, center_momentum=0.5)
    b = hand_batch()
    x = fields(net, b).flatten(1).detach()
    c = net.centers.clone()
    r = torch.softmax(x @ c.T, 1)
    c1 = F.normalize(0.5 * c + 0.5 * r.T @ x, dim=1)
    k = (x @ c1.T).argmax(1)
    net.train()
    with torch.no_grad():
        out = net(b)
        assert torch.allclose(net.centers, c1, atol=1e-6)
    assert torch.allclose(net.centers.norm(dim=1), torch.ones(2))
    assert 0 < int(k.sum()) < len(k)  # both clusters have rows
    with torch.no_grad():
        for row in range(len(x)):
            kk = int(k[row])
            h = x[row]
            for i, layer in enumerate(net.layers):
                w = layer.weight * layer.domain_weight[kk]
                h = h @ w + layer.bias + layer.domain_bias[kk]
                h = torch.relu(h) if i < len(net.layers) - 1 else h
            assert float(out[row]) == pytest.approx(float(h), abs=1e-5)
        net.eval()
        net(b)
        assert torch.allclose(net.centers, c1, atol=1e-6)
        assert torch.equal(net.assign(x), k)


def test_epnet_gate_is_two_sigmoid_by_hand():
    """delta = 2 sigmoid(W2 relu(W1 [e_domain, sg(e_user, e_item)] + b1) + b2) in (0, 2),
    multiplied into the user and item embeddings; the gate stops their gradient."""
    net = model("epnet", hidden=[3])
    b = hand_batch()
    e = fields(net, b).detach()
    s, a = e[:, 2], e[:, :2].flatten(1)
    delta = 2 * torch.sigmoid(
        dense(net.gate.fc2, torch.relu(dense(net.gate.fc1, torch.cat([s, a], 1))))
    )
    assert ((delta > 0) & (delta < 2)).all() and (delta > 1).any()
    with torch.no_grad():
        want = dense(net.head, torch.relu(dense(net.mlp[0], a * delta))).squeeze(-1)
        assert torch.allclose(net(b), want, atol=1e-6)
    # stop-gradient: the gate alone sends no gradient into the user/item tables
    net.zero_grad()
    a_in = a.clone().requires_grad_(True)
    net.gate(s, stopped=a_in).sum().backward()
    assert a_in.grad is None


@pytest.mark.parametrize("gate_at", ["input", "output"])
def test_ppnet_per_layer_gates_by_hand(gate_at):
    """Domain d's tower: H_{l+1} = relu((delta_l(g) * H_l) W_l + b_l) (paper, gates on each
    layer's input) or relu(H_l W_l + b_l) * delta_l(g) (SWR); g = [e_u, e_i, sg(E)]."""
    net = model("ppnet", hidden=[3, 2], gate_at=gate_at)
    b = hand_batch()
    with torch.no_grad():
        out = net(b)
        e = fields(net, b)
        for r in range(len(out)):
            tower = net.towers[int(b["domain_id"][r])]
            x = e[r].flatten()
            g = torch.cat([e[r, :2].flatten(), x])
            h = x
            for layer, gate in zip(tower.layers, tower.gates):
                delta = 2 * torch.sigmoid(dense(gate.fc2, torch.relu(dense(gate.fc1, g))))
                if gate_at == "input":
                    h = torch.relu(dense(layer[0], h * delta))
                else:
                    h = torch.relu(dense(layer[0], h)) * delta
            assert float(out[r]) == pytest.approx(float(dense(tower.head, h)), abs=1e-5)


def test_hamur_adapter_weights_from_the_hypernetwork_by_hand():
    """W_down = U_1 H V_1 and W_up = U_2 H V_2 with H = reshape(hyper(x), k, k) per row; the
    adapter cell h + DomainNorm_d(sigmoid(h W_down + b_1) W_up + b_2) computed with the
    per-row weight matrices equals the model's ((h U) H) V."""
    net = model("hamur", hidden=[3, 2], hyper_hidden=[3], rank=2, adapter_dim=2,
                batch_norm=False)  # fmt: skip
    ad = net.adapters[0]
    with torch.no_grad():
        for p in (ad.u_down, ad.v_down, ad.u_up, ad.v_up, ad.b_down, ad.b_up):
            p.normal_()
        ad.norm.running_mean.normal_()
        ad.norm.running_var.uniform_(0.5, 2.0)
    b = hand_batch()
    with torch.no_grad():
        out = net(b)
        x = fields(net, b).flatten(1)
        hyper = torch.relu(dense(net.hyper[2], torch.relu(dense(net.hyper[0], x)))).view(-1, 2, 2)
        w_down, w_up = ad.weights(hyper)
        for r in range(len(x)):
            d = int(b["domain_id"][r])
            assert torch.allclose(w_down[r], ad.u_down @ hyper[r] @ ad.v_down, atol=1e-6)
            tower = net.backbone[d]
            h = torch.relu(dense(tower.layers[0][0], x[r]))
            h = torch.relu(dense(tower.layers[1][0], h))
            u = torch.sigmoid(h @ w_down[r] + ad.b_down) @ w_up[r] + ad.b_up
            nrm = ad.norm
            u = (u - nrm.running_mean[d]) / torch.sqrt(nrm.running_var[d] + nrm.eps)
            h = h + u * nrm.gamma + nrm.beta
            assert float(out[r]) == pytest.approx(float(dense(tower.head, h)), abs=1e-4)


def test_m3oe_fusion_weights_by_hand():
    """fused = sum_e g_e E_e + sigmoid(w_exp) (sigmoid(w_bal) D_d + (1 - sigmoid(w_bal)) /
    (n - 1) sum_{j != d} D_j), then domain d's tower: experts and domains one by one."""
    net = model("m3oe", n_domains=3, hidden=[4, 3, 2], n_experts=2)
    with torch.no_grad():
        net.w_exp.fill_(0.3)
        net.w_bal.fill_(-0.4)
    b = hand_batch(domains=(0, 1, 2, 2, 1))
    a, w = torch.sigmoid(torch.tensor(0.3)), torch.sigmoid(torch.tensor(-0.4))

    def expert(bank, i, h):
        lin = h @ bank.weights[0][i] + bank.biases[0][i, 0]
        ln = F.layer_norm(lin, (2,)) * bank.norm_weights[0][i, 0] + bank.norm_biases[0][i, 0]
        return torch.relu(ln)

    with torch.no_grad():
        out = net(b)
        x = fields(net, b).flatten(1)
        for r in range(len(x)):
            d = int(b["domain_id"][r])
            star = x[r] @ (net.star.weight * net.star.domain_weight[d])
            star = star + net.star.bias + net.star.domain_bias[d]
            rep = net.star_mlp(star) + net.skip(x[r])
            g = torch.softmax(rep @ net.gate_weight[d] + net.gate_bias[d], 0)
            shared = sum(g[i] * expert(net.experts, i, rep) for i in range(2))
            doms = [expert(net.domain_experts, j, rep) for j in range(3)]
            others = sum(doms[j] for j in range(3) if j != d) / 2
            fused = shared + a * (w * doms[d] + (1 - w) * others)
            assert float(out[r]) == pytest.approx(float(net.towers[d](fused)), abs=1e-5)
    assert torch.allclose(torch.stack(net.fusion_weights()).flatten(), torch.stack([a, w]))


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", MODELS_TESTED)
def test_gradients_reach_every_parameter(name):
    """One training step on a batch holding every domain: every trainable parameter gets a
    gradient with a non-zero entry. (HAMUR: its adapter's b_up is subtracted again by the
    domain norm in training, so its gradient is zero; and without its default BatchNorms,
    which do the same to the biases before them.)"""
    cfg = {
        k: v
        for k, v in tiny_overrides(name).items()
        if k in MODELS.get(name).Config.__dataclass_fields__
    }
    cfg.update(dropout=0.0)
    if name == "hamur":
        cfg["batch_norm"] = False
    torch.manual_seed(0)
    net = build_model(name, info(3), **cfg).train()
    with torch.no_grad():
        for emb in (net.inputs.user, net.inputs.item, net.inputs.domain):
            emb.weight.normal_(0.0, 1.0)
    b = hand_batch(domains=(0, 1, 2, 0, 1, 2, 2, 1, 0))
    if name == "adaptdhm":  # centres on rows of the batch, kept still: every cluster has rows
        net.cfg.center_momentum = 1.0
        with torch.no_grad():
            x = fields(net, b).flatten(1)
            net.centers.copy_(F.normalize(x[[0, 4]], dim=1))
    torch.nn.functional.binary_cross_entropy_with_logits(
        net(b), torch.tensor([1.0, 0, 1, 0, 1, 1, 0, 0, 1])
    ).backward()
    for n, p in net.named_parameters():
        if name == "hamur" and n.endswith("b_up"):
            continue
        g = p.grad
        assert g is not None, n
        g = g.coalesce().values() if g.is_sparse else g
        assert g.abs().sum() > 0, n


@pytest.mark.parametrize("name", ["m2m", "adasparse", "adaptdhm", "epnet"])
def test_rows_do_not_depend_on_the_rest_of_the_batch(amazon, name):
    """Evaluation: a row's logit is the same alone or among other domains' rows (the models
    tests/test_models.py does not route-test: no parameters of a domain's own)."""
    cfg = {
        k: v
        for k, v in tiny_overrides(name).items()
        if k in MODELS.get(name).Config.__dataclass_fields__
    }
    torch.manual_seed(0)
    net = build_model(name, amazon.info, **cfg).eval()
    mixed = amazon.train.take(torch.arange(0, len(amazon.train), 7))
    d0 = mixed["domain_id"] == 0
    alone = {k: v[d0] for k, v in mixed.items()}
    assert torch.allclose(net(mixed)[d0], net(alone), atol=1e-6)


# ----------------------------------------------------------------------------- state, parts


def _framework(name, data, model_name, **cfg):
    torch.manual_seed(0)
    tiny = tiny_overrides(model_name)
    net = build_model(model_name, data.info, **{
        k: v for k, v in tiny.items() if k in MODELS.get(model_name).Config.__dataclass_fields__
    })  # fmt: skip
    ctx = Context(data, TrainConfig(batch_size=64, device="cpu"), torch.device("cpu"),
                  torch.Generator().manual_seed(0))  # fmt: skip
    cls = FRAMEWORKS.get(name)
    return cls(net, ctx, cls.Config(**cfg))


@pytest.mark.parametrize("method", ["dn", "reptile"])
def test_outer_steps_leave_adaptdhm_centres_as_the_inner_passes_left_them(amazon, method):
    """Buffers are not parameters: an outer step theta + beta (theta~ - theta) moves the
    weights and leaves the centres where the inner passes put them, unit-norm (averaging
    unit vectors would not be)."""
    fw = _framework(method, amazon, "adaptdhm", beta=0.5, finetune=False)
    seen = []
    outer = fw.outer_step

    def spy(opt, snap):
        seen.append(fw.model.centers.clone())
        outer(opt, snap)
        assert torch.equal(fw.model.centers, seen[-1])

    fw.outer_step = spy
    start = fw.model.centers.clone()
    fw.model.train()
    fw.train_epoch(1, range(amazon.info.n_domains))
    assert seen and not torch.equal(fw.model.centers, start)
    assert torch.allclose(fw.model.centers.norm(dim=1), torch.ones(len(start)))


def test_snapshot_restore_and_state_dict_treat_buffers_as_model_state(amazon):
    """A snapshot restores parameters and leaves buffers; the state a stage keeps (the
    model's state_dict) holds them, so loading the best state brings them back; and no
    framework makes per-domain copies of them (they are not parameters)."""
    fw = _framework("alternate", amazon, "adaptdhm")
    net = fw.model.train()
    snap = Snapshot(fw.named_params(), fw.sparse_names)
    before = {n: p.detach().clone() for n, p in fw.named_params().items()}
    saved = {k: v.clone() for k, v in fw.state_dict()["model"].items()}
    assert "centers" in saved
    batch = amazon.train.take(slice(0, 64))
    loss = F.binary_cross_entropy_with_logits(net(batch), batch["label"])
    loss.backward()
    with torch.no_grad():
        for p in fw.named_params().values():
            if p.grad is not None and not p.grad.is_sparse:
                p.sub_(0.1 * p.grad)
    moved = net.centers.clone()
    assert not torch.equal(moved, saved["centers"])
    snap.restore()
    assert all(torch.equal(p, before[n]) for n, p in fw.named_params().items())
    assert torch.equal(net.centers, moved)  # restore is about parameters
    fw.load_state_dict({"model": saved})
    assert torch.equal(net.centers, saved["centers"])
    for name, cfg in [("adaptdhm", {}), ("adasparse", {}), ("hamur", {}),
                      ("sarnet", {"batch_norm": True})]:  # fmt: skip
        other = build_model(name, amazon.info, **cfg)
        buffers = {n for n, _ in other.named_buffers()}
        assert buffers and not buffers & set(specific_param_names(other, "all"))


@pytest.mark.parametrize("name", [m for m in MODELS if MODELS.get(m).domain_specific])
def test_mamdr_on_the_models_own_domain_specific_parts(amazon, name):
    """`specific_params=<Model.domain_specific>`: MAMDR's theta_d are exactly the model's
    per-domain parts, the finetune stage finetunes them, n_parameters counts them once."""
    rule = MODELS.get(name).domain_specific
    over = tiny_overrides(name, epochs=1, k=1, specific_params=rule, finetune_params=rule)
    res = train(amazon, name, "mamdr", overrides=over)
    fw = res.framework
    names = specific_param_names(fw.model, rule)
    assert names and set(fw.names) == set(names)
    assert len(names) < len(list(fw.model.parameters()))
    own = sum(p.numel() for p in fw.model.parameters() if p.requires_grad)
    assert res.record["n_parameters"] == own + fw.offsets.numel()
    assert math.isfinite(res.record["metrics"]["test"]["auc_mean"])
    n_dom = amazon.info.n_domains
    params = dict(fw.model.named_parameters())
    for n in names:  # each is one domain's (ModuleList index) or has a slice per domain
        index = re.match(r"^[a-z_.]*?\.(\d+)\.", n)
        assert (index and int(index[1]) < n_dom) or params[n].shape[0] == n_dom, n


# ----------------------------------------------------------------------------- profile, fields


def test_swr_profile_is_the_configs_defaults_and_its_reference_builds(amazon):
    data = swr.load()
    assert "Xiaopengli1/Scenario-Wise-Rec" in data["source"]
    assert swr.models() == list(MODELS_TESTED)
    framework_names = {
        f.name for n in FRAMEWORKS for f in dataclasses.fields(FRAMEWORKS.get(n).Config)
    }
    framework_names |= {f.name for f in dataclasses.fields(TrainConfig)}
    for name in MODELS_TESTED:
        cfg = MODELS.get(name).Config()
        fields_ = {f.name for f in dataclasses.fields(cfg)}
        for entry in data["models"][name]["defaults"]:
            assert entry["from"] and getattr(cfg, entry["name"]) == entry["value"], entry
        for entry in data["models"][name]["reference"]:
            assert entry["from"] and entry["name"] in fields_, entry
        # a model's own names never shadow a framework's or the train loop's (--set name=...)
        assert (
            not (fields_ - {f.name for f in dataclasses.fields(MODELS.get("mlp").Config)})
            & framework_names
        )
        small = {k: v for k, v in tiny_overrides(name).items() if k in fields_}
        net = build_model(name, amazon.info, **{**small, **swr.reference(name)}).eval()
        assert net(amazon.train.take(slice(0, 8))).shape == (8,)
    assert json.dumps(data["training"])  # recorded, not adopted


@pytest.mark.parametrize(
    "name, sets, message",
    [
        ("epnet", {"scenario_fields": ["shop"]}, "scenario_fields: unknown field(s) 'shop'"),
        ("adasparse", {"scenario_fields": ["user", "item", "domain"]}, "leave at least one"),
        ("ppnet", {"id_fields": []}, "name at least one field"),
        ("adasparse", {"form": "soft"}, "form: expected one of 'binarization', 'scaling'"),
        ("hamur", {"adapters": 3}, "an adapter cell follows a hidden layer"),
        ("m3oe", {"hidden": [8, 4]}, "at least 3 sizes"),
        ("m2m", {"heads": 3}, "divisible by heads"),
    ],
)
def test_bad_model_options_are_user_errors(amazon, name, sets, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build_model(name, amazon.info, **sets)


# ----------------------------------------------------------------------------- mdrbench eval


@pytest.fixture(scope="module")
def taobao10(tmp_path_factory):
    from mdrbench.builders.build import build_dataset
    from mdrbench.builders.synth import synthesize

    root = tmp_path_factory.mktemp("taobao10")
    synthesize("taobao", root / "raw", n_domains=10, size="tiny", seed=0)
    return build_dataset("taobao-10", raw_dir=root / "raw", out=root / "data", seed=0)


@pytest.mark.parametrize("method", ["alternate", "mamdr"])
@pytest.mark.parametrize("name", MODELS_TESTED)
def test_eval_on_tiny_taobao10_writes_a_finite_test_auc(taobao10, tmp_path, name, method):
    from mdrbench.cli import cli

    extra = {"k": 1, "finetune_epochs": 1} if method == "mamdr" else {}
    sets = []
    for k, v in tiny_overrides(name, **extra).items():
        sets += ["--set", f"{k}={json.dumps(v) if isinstance(v, list) else v}"]
    args = ["eval", "--dataset", str(taobao10), "--model", name, "--method", method,
            "--out", str(tmp_path), "-q", "--no-predictions", *sets]  # fmt: skip
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (path,) = tmp_path.glob(f"taobao-10__{name}__{method}__seed0.json")
    rec = json.loads(path.read_text())
    assert math.isfinite(rec["metrics"]["test"]["auc_mean"])
    assert len(rec["metrics"]["test"]["domains"]) == 10
    # the paper profile's method-level entries applied, but the paper never ran the model
    assert rec["config"]["profile"]["model_covered"] is False and rec["track"] == "custom"
