"""beta* and H* (Luck Matters sec. 5) against the authors' ``compute_Hs``, written out literally."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_spec
from test_packed import packed_run

from spec_ray.engine.spec import RunSpec
from spec_ray.storage import schema as S

STEPS = 300  # the run's last step: tiny_spec trains 2 epochs x 150 steps


def aug(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The authors' ``get_aug_w``: [[W, b], [0, 1]]."""
    out = torch.zeros(w.shape[0] + 1, w.shape[1] + 1, dtype=w.dtype)
    out[:-1, :-1], out[:-1, -1], out[-1, -1] = w, b, 1
    return out


def pre_bns(ws, bs, bn_stats, x):
    """The authors' ``Model.forward``'s ``pre_bns`` with BN after the ReLU (eval mode, not affine)."""
    h, out = x, []
    for layer, (w, b) in enumerate(zip(ws[:-1], bs[:-1])):
        h = torch.relu(h @ w.T + b)
        out.append(h)
        if bn_stats:
            mean, var = bn_stats[0][layer], bn_stats[1][layer]
            h = (h - mean) / torch.sqrt(var + 1e-5)
    return out


def compute_hs(student, teacher, x):
    """recon_multilayer.compute_Hs, one sample at a time: student rows, teacher columns."""
    s_pre, t_pre = pre_bns(*student, x), pre_bns(*teacher, x)
    c = student[0][-1].shape[0]
    depth = len(s_pre)
    hs, betas = [0.0] * depth, [0.0] * depth
    for i in range(x.shape[0]):
        h = torch.eye(c + 1, dtype=x.dtype)
        for j in reversed(range(depth)):
            beta = aug(student[0][j + 1], student[1][j + 1]).T @ h @ aug(teacher[0][j + 1], teacher[1][j + 1])
            betas[j] = betas[j] + beta / x.shape[0]
            h = beta.clone()
            h[:, :-1] *= (t_pre[j][i] > 0).to(x.dtype)[None, :]
            h[:-1, :] *= (s_pre[j][i] > 0).to(x.dtype)[:, None]
            hs[j] = hs[j] + h / x.shape[0]
    return [b[:-1, :-1] for b in betas], [h[:-1, :-1] for h in hs]


def table(rows, run_id: str, step: int, layer: int, column: str, shape) -> torch.Tensor:
    """One run's stored (student x teacher) matrix of a layer at a step."""
    mine = rows[(rows[S.RUN_ID] == run_id) & (rows[S.STEP] == step) & (rows[S.LAYER] == layer)]
    mine = mine.sort_values([S.NODE, S.STUDENT])
    return torch.tensor(mine[column].to_numpy()).view(shape[1], shape[0]).T


@pytest.mark.parametrize("bn", ["none", "after_relu"])
def test_modulation_matches_the_authors_compute_hs(bn: str) -> None:
    specs = [tiny_spec(seed=s, **{"teacher.widths": (5, 4), "student.multi": 2, "student.student_bn": bn,
                                  "checkpoint.keep_modulation": True}) for s in (1, 2)]  # fmt: skip
    pack, state, tables = packed_run(specs, STEPS)
    rows = tables[S.MODULATION]
    assert sorted(rows[S.STEP].unique()) == [0, STEPS]  # at init and at the end only
    from spec_ray.engine.pack import run_id
    from spec_ray.engine.trainer import init_state, prepare

    data = prepare(pack)
    teacher = (data.teacher.weights, data.teacher.biases)
    for step, st in ((0, init_state(pack)), (STEPS, state)):
        for r, spec in enumerate(pack.runs):
            x = data.x_eval[r // pack.group_size][:, :-1]  # (N, d)
            stats = [[b[r] for b in st.buffers[:2]], [b[r] for b in st.buffers[2:]]] if bn != "none" else None
            student = ([w[r] for w in st.student.weights], [b[r] for b in st.student.biases], stats)
            betas, hs = compute_hs(student, ([w[r] for w in teacher[0]], [b[r] for b in teacher[1]], None), x)
            for layer, (beta, h) in enumerate(zip(betas, hs), start=1):
                got_beta = table(rows, run_id(spec), step, layer, S.BETA, beta.shape)
                got_h = table(rows, run_id(spec), step, layer, S.H, h.shape)
                torch.testing.assert_close(got_beta, beta, rtol=1e-9, atol=1e-12)
                torch.testing.assert_close(got_h, h, rtol=1e-9, atol=1e-12)
                assert h.abs().sum() > 0 and not torch.equal(h, beta)  # the gates act


def test_no_modulation_rows_unless_asked() -> None:
    _, _, tables = packed_run([tiny_spec(**{"teacher.widths": (5, 4)})], 20)
    assert S.MODULATION not in tables


def test_modulation_is_for_mlps() -> None:
    with pytest.raises(ValueError, match="checkpoint.keep_modulation"):
        RunSpec().replace(**{"model.arch": "conv", "checkpoint.keep_modulation": True})


def test_winner_ranks_in_h_by_brute_force(tmp_path) -> None:
    """``modulation.winners_in_modulation``: each teacher node's final winner (best_student at the last step)
    ranked among all students by its column of H* and beta*, checked by a loop over the stored rows."""
    from analysis.load import open_results
    from analysis.luck import modulation as luck_modulation
    from spec_ray.engine.pack import Pack
    from spec_ray.orchestration.runner import run_pack
    from spec_ray.storage.manifest import packs_to_dict, write_sweep
    from spec_ray.storage.traces import TraceStore
    from spec_ray.storage.verify import COMPLETE, check_pack

    specs = [tiny_spec(seed=s, **{"teacher.widths": (4, 3), "checkpoint.keep_modulation": True,
                                  "train.epochs": 3}) for s in (1, 2)]  # fmt: skip
    store = TraceStore(str(tmp_path), "lm")
    pack = Pack(tuple(specs))
    write_sweep(store, {"sweep": packs_to_dict("lm", [pack])})
    run_pack(pack, store, block_epochs=1, progress=False)  # a middle block without modulation rows
    assert check_pack(store, pack).state == COMPLETE  # 2 x sum(m_l n_l) rows a run, no more
    res = open_results(str(tmp_path / "lm"))
    got = luck_modulation.winners_in_modulation(res).set_index([S.RUN_ID, S.LAYER, "stage"])
    rows = res.read(S.MODULATION, [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.STUDENT, S.BETA, S.H])
    best = res.read(S.TEACHER_NODES, [S.RUN_ID, S.STEP, S.LAYER, S.NODE, S.BEST_STUDENT])
    best = best[best[S.STEP] == 450].set_index([S.RUN_ID, S.LAYER, S.NODE])[S.BEST_STUDENT]
    assert len(got) == 2 * 2 * 2  # runs x layers x stages
    for (run, layer, step), block in rows.groupby([S.RUN_ID, S.LAYER, S.STEP]):
        ranks = {S.H: [], S.BETA: []}
        for node, column in block.groupby(S.NODE):
            winner = column[column[S.STUDENT] == best[(run, layer, node)]]
            for value in ranks:
                above = (column[value] > float(winner[value].iloc[0])).sum()
                ranks[value].append(above / (len(column) - 1))
        row = got.loc[(run, layer, "init" if step == 0 else "end")]
        assert row["h_rank"] == pytest.approx(sum(ranks[S.H]) / len(ranks[S.H]))
        assert row["beta_rank"] == pytest.approx(sum(ranks[S.BETA]) / len(ranks[S.BETA]))
    frame = luck_modulation.matrices(res)
    assert frame[S.RUN_ID].nunique() == 1 and len(frame) == 2 * (4 * 12 + 3 * 9)  # stages x sum of m_l n_l
    # A storage root whose other experiment keeps no modulation table: read from the one that does.
    run_pack(Pack((tiny_spec(seed=5),)), TraceStore(str(tmp_path), "plain"), block_epochs=1, progress=False)
    both = open_results(str(tmp_path))
    assert len(both.roots) == 2 and len(luck_modulation.winners_in_modulation(both)) == len(got)
