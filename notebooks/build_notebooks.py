# Regenerates notebooks/*.ipynb from this one file (run: .venv/bin/python notebooks/build_notebooks.py).
# Edit the cells here, regenerate, and commit both; the notebooks only call tifkit.analysis / tifkit.pipeline.
"""Generate notebooks/*.ipynb (outputs empty, one `parameters` cell each)."""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
OUT.mkdir(parents=True, exist_ok=True)

COMMON_PARAMS = '''scale = "ci"                        # "ci": toy world, one seed, ~1 min on 2 CPU cores; "full": the params file as is
params_file = "params/tiny.yaml"    # any params/*.yaml
# overrides: extra strings section.key=value applied last, e.g. ["train.objective=slic", "world.flip_rate=0.3"]
overrides = []
seeds = None                        # None: one seed at ci scale, run.seeds of the params file at full scale
run_root = None                     # None: runs/nb-ci at ci scale, the params file's run.root at full scale
figures_dir = "runs/nb-ci/figures"  # the papermill batch (python -m tifkit.notebooks) passes figures/'''

SETUP = '''import time
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from tifkit import analysis as A

A.notebook_setup()
p = A.notebook_params(params_file, scale, overrides, run_root)
seeds = A.notebook_seeds(p, scale, seeds)
FIG = Path(figures_dir)
FIG.mkdir(parents=True, exist_ok=True)
t_start = time.time()
pd.set_option("display.width", 160)
pd.set_option("display.precision", 4)
print(f"scale={scale}  params={params_file}  family={p.model.family}  seeds={seeds}  run root={p.run.root}")
print(f"world: {p.world.n_train} training pairs, {p.world.n_val} validation pairs, {p.world.n_test} test prompts; "
      f"{p.train.objective.upper()}, beta={p.train.beta}, keep={p.select.keep}")'''

HW = ("**Hardware.** CPU only (2 cores are enough). At `scale=\"ci\"` (the default: a toy world of 96 "
      "pairs, hidden size 32, one seed) it runs in {ci}; at `scale=\"full\"` (params/tiny.yaml: 2000 pairs, "
      "hidden size 64, {seeds}) in {full} on 2 shared CPU cores, less when the batch's stages are "
      "already cached under `runs/`. Timings: docs/NOTEBOOKS.md.\n\n"
      "**Run it.** Open it in Jupyter and run all cells, or `python -m tifkit.notebooks --scale full {name}` "
      "(papermill; executed copy under `runs/notebooks/`, figures under `figures/`).")


def nb(name, cells):
    n = new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.metadata["language_info"] = {"name": "python"}
    n.cells = cells
    for i, c in enumerate(n.cells):
        c.id = f"{name[:2]}-{i:02d}"  # stable ids: regenerating gives clean diffs
    nbformat.validator.normalize(n)
    path = OUT / f"{name}.ipynb"
    nbformat.write(n, path)
    print("wrote", path)


def params_cell(src):
    c = new_code_cell(src)
    c.metadata["tags"] = ["parameters"]
    return c


md, code = new_markdown_cell, new_code_cell

# ---------------------------------------------------------------------------------------------- 00
nb("00_quickstart", [
    md("# 00 - Quickstart: world -> SFT -> warm-up -> full-data DPO -> WinRate\n\n"
       "The whole pipeline once, on the built-in preference world: prompts ask for their letters sorted; an "
       "oracle reward scores any response; the training pairs carry label noise (15% flipped, most of it by a "
       "verbosity-biased annotator). A tiny model learns the task by SFT (the reference model), then one "
       "epoch of DPO on all pairs (the warm-up model of METHOD.md), then two more epochs on all pairs "
       "(\"full data\", the baseline every selection rule is compared with). The oracle judges full-data DPO "
       "against SFT on held-out prompts (WinRate: win 1, tie 0.5, loss 0).\n\n"
       "**What it tests.** No paper claim: that the pipeline runs and that preference training moves the "
       "model, the ground every other notebook stands on.\n\n"
       + HW.format(ci="about 20 s", full="about 2 minutes", seeds="first seed only", name="00_quickstart")),
    params_cell(COMMON_PARAMS),
    code(SETUP),
    md("## Data\nOne row per training pair. `gt_*` columns are the world's ground truth: the analysis reads "
       "them, selection rules never do."),
    code('''from tifkit.pipeline import continue_stage, evaluate_stage, prepare, selection_mask, sft_stage, warmup_stage

ctx = prepare(p, seeds[0])
print(f"run folder: {ctx.run_dir}")
print(f"{len(ctx.train)} training pairs, {ctx.train.gt_flipped.mean():.1%} mislabelled; {len(ctx.val)} validation pairs; "
      f"{len(ctx.test_prompts)} test prompts")
ctx.train[["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "gt_reward_chosen", "gt_reward_rejected",
           "gt_flipped"]].head(8)'''),
    md("## SFT, warm-up, full-data DPO\nEach stage is cached on disk: a rerun with the same parameters trains nothing."),
    code('''sft_dir = sft_stage(ctx)
warm_dir = warmup_stage(ctx)
full_dir = continue_stage(ctx, "full", selection_mask(ctx, "full"))
results = {"warm-up": evaluate_stage(ctx, "warmup", warm_dir), "full": evaluate_stage(ctx, "full", full_dir)}
for label, res in results.items():
    w = res.winrate
    print(f"{label:8s} WinRate vs SFT {w.estimate:.3f} [{w.lo:.3f}, {w.hi:.3f}]  mean oracle reward "
          f"{res.table.score_policy.mean():.3f} (SFT {res.table.score_ref.mean():.3f})")'''),
    md("## Generations\nGreedy responses of SFT and full-data DPO to the first test prompts, with the oracle reward of each."),
    code('''results["full"].table[["prompt", "response_ref", "score_ref", "response_policy", "score_policy", "verdict"]].head(10)'''),
    md("## Reward distribution"),
    code('''from tifkit.plots import reward_distribution

fig = reward_distribution(A.reward_frame(results), ["sft", "warm-up", "full"],
                          title=f"{p.run.name}: oracle reward on {len(ctx.test_prompts)} test prompts (seed {ctx.seed})")
A.show(fig, FIG / f"00_{p.run.name}_reward_distribution.png")'''),
    md("## Conclusion"),
    code('''conclusion = A.conclude_quickstart(results["full"])
A.save_json({"notebook": "00_quickstart", "scale": scale, "seed": ctx.seed, "conclusion": conclusion,
             "winrate": results["full"].winrate._asdict(), "seconds": round(time.time() - t_start, 1)},
            FIG / f"00_{p.run.name}_summary.json")
display(Markdown(conclusion))
print(f"done in {time.time() - t_start:.0f} s")'''),
])

# ---------------------------------------------------------------------------------------------- 01
nb("01_tif_vs_if", [
    md("# 01 - Truncated influence (TIF) against classical influence (IF)\n\n"
       "IF(d) = <grad loss(theta; d), g_val>, the first-order effect of a step on pair d on the validation "
       "loss, at the warm-up model theta. The pairs are cut into three equal groups by IF (small, medium, "
       "large) and the warm-up model is trained on each group alone, logging the loss and the reward margin "
       "on D_val as it goes.\n\n"
       "**Claims tested** (METHOD.md):\n"
       "- **Claim 2**: training on the medium-IF group beats the small- and large-IF groups (validation loss "
       "and margin curves); small-IF raises the validation loss, large-IF overfits. We also judge each "
       "group's model against SFT on the test prompts, the check of \"overfits the validation proxy\".\n"
       "- **Claim 3**: TIF selection (the middle IF band) beats classical top-IF selection, both at "
       "`select.keep` of the data and trained with the same schedule (WinRate against SFT).\n\n"
       + HW.format(ci="about 40 s", full="about 6 minutes", seeds="3 seeds", name="01_tif_vs_if")),
    params_cell(COMMON_PARAMS + '''
n_groups = 3                        # IF groups (3: small / medium / large)
rules = ["full", "random", "top-if", "tif"]  # selections trained and judged for claim 3'''),
    code(SETUP),
    md("## IF groups\nSizes, IF ranges and the share of mislabelled pairs in each group (ground truth, for reading only)."),
    code('''groups = A.group_experiment(p, seeds, n_groups=n_groups)
groups["summary"]'''),
    md("## Validation loss and margin while training on each group (claim 2)\nStep 0 is the warm-up model. "
       "With several seeds the thick line is the mean, faint lines are single seeds."),
    code('''A.show(A.plot_group_curves(groups["curves"]), FIG / f"01_{p.run.name}_group_curves.png")
group_wins = A.pooled_winrates(groups["winrates"])
group_wins'''),
    code('''A.show(A.plot_winrates(group_wins, title="models trained on one IF group, vs SFT", name_col="name"),
       FIG / f"01_{p.run.name}_group_winrates.png")
claim2 = A.conclude_groups(groups["curves"], group_wins)
display(Markdown(claim2))'''),
    md("## TIF against top-IF selection (claim 3)\nEach rule keeps `select.keep` of D_tr and continues from the "
       "warm-up model for `train.continue_epochs` epochs; WinRate against SFT on the test prompts, prompts "
       "resampled within each seed for the intervals."),
    code('''rx = A.rules_experiment(p, seeds, rules)
rx["summary"].drop(columns=["winrate_per_seed"])'''),
    code('''A.show(A.plot_winrates(rx["summary"], title=f"{p.run.name}: selections at keep {p.select.keep:g}"),
       FIG / f"01_{p.run.name}_tif_vs_topif.png")
d = A.rule_difference(rx["per_prompt"], "tif", "top-if")
claim3 = A.conclude_difference(d, "Claim 3", "TIF selection wins more often against SFT than top-IF selection")
display(Markdown(claim3))'''),
    md("## Conclusion"),
    code('''A.save_json({"notebook": "01_tif_vs_if", "scale": scale, "seeds": seeds, "claim2": claim2, "claim3": claim3,
             "tif_minus_topif": d, "group_winrates": group_wins.to_dict("records"),
             "seconds": round(time.time() - t_start, 1)}, FIG / f"01_{p.run.name}_summary.json")
display(Markdown(f"- {claim2}\\n- {claim3}"))
print(f"done in {time.time() - t_start:.0f} s")'''),
])

# ---------------------------------------------------------------------------------------------- 02
nb("02_sf_correlation", [
    md("# 02 - Do the cheap proxies track influence? (LossDiff, IRM vs IF)\n\n"
       "Scores of every training pair at the warm-up model theta: exact IF; LossDiff(d) = loss(theta; d) - "
       "loss(theta_val; d), with theta_val one epoch of DPO on D_val (forward passes only, first order "
       "lr * IF); IRM(d) = h_theta(d), the implicit reward margin (no validation set at all).\n\n"
       "**Claims tested** (METHOD.md):\n"
       "- **Claim 4**: LossDiff and IRM correlate positively with IF (Pearson and Spearman), LossDiff more "
       "strongly (paper: about 0.77 and 0.67).\n"
       "- Also shown: the AUROC of each score for finding the mislabelled pairs (the world's ground truth; "
       "a low score flags a pair), and **claim 7** at this model size: the wall time of LossDiff-IRM "
       "scoring against exact IF (batched and per-pair loop) on a subset.\n\n"
       + HW.format(ci="about 20 s", full="about 4 minutes", seeds="3 seeds", name="02_sf_correlation")),
    params_cell(COMMON_PARAMS + '''
keep = 0.64                         # keep ratio of the selections compared with TIF
cost_pairs = None                   # pairs timed for the cost comparison (claim 7); None: 64 at ci scale, 256 at full'''),
    code(SETUP),
    md("## Score tables\nOne per seed (cached: the batch and notebook 03 reuse them)."),
    code('''tables = A.score_tables(p, seeds)
t0 = tables[seeds[0]]
t0[["pair_id", "if", "tif", "lossdiff", "irm", "rm_margin", "score_chosen", "score_rejected", "gt_flipped"]].head()'''),
    md("## Correlation with IF, AUROC, overlap with TIF\n`value` is the mean over seeds (`value_std` their "
       "standard deviation), `paper` the paper's number where it gives one."),
    code('''reports = {s: A.score_report(t, keep, p.select) for s, t in tables.items()}
report = A.aggregate(reports, ["section", "name", "statistic"])
report[["section", "name", "statistic", "value", "value_std", "n_runs", "paper"]]'''),
    code('''A.show(A.plot_score_scatter(t0, reports[seeds[0]]), FIG / f"02_{p.run.name}_scatter.png")
A.show(A.plot_auroc(report), FIG / f"02_{p.run.name}_auroc.png")'''),
    code('''claim4 = A.conclude_correlation(report)
auroc_text = A.conclude_auroc(report)
display(Markdown(f"{claim4}\\n\\n{auroc_text}"))'''),
    md("## Cost of scoring (claim 7)\nThe first `cost_pairs` training pairs, seed 0's models, one process. "
       "`seconds_full` extrapolates to all of D_tr. Timings on a shared machine are noisy."),
    code('''from tifkit.pipeline import prepare

cost = A.scoring_cost(prepare(p, seeds[0]), n_pairs=cost_pairs or (64 if scale == "ci" else 256))
print(f"exact IF, batched vs loop: max relative difference {cost.attrs.get('if_max_rel_diff', float('nan')):.1e}")
claim7 = A.conclude_cost(cost)
display(cost)
display(Markdown(claim7))'''),
    md("## Conclusion"),
    code('''A.save_json({"notebook": "02_sf_correlation", "scale": scale, "seeds": seeds, "claim4": claim4, "auroc": auroc_text,
             "claim7": claim7, "report": report.drop(columns=["paper_lo", "paper_hi"]).to_dict("records"),
             "cost": cost.to_dict("records"), "seconds": round(time.time() - t_start, 1)},
            FIG / f"02_{p.run.name}_summary.json")
display(Markdown(f"- {claim4}\\n- {auroc_text}\\n- {claim7}"))
print(f"done in {time.time() - t_start:.0f} s")'''),
])

# ---------------------------------------------------------------------------------------------- 03
nb("03_fusion", [
    md("# 03 - Fusion: LossDiff-IRM against either proxy alone\n\n"
       "LossDiff-IRM keeps a pair when its LossDiff *and* its IRM lie in middle percentile bands of equal "
       "width, widened until the intersection keeps the target share. How much of the exact TIF "
       "selection (middle IF band of the same size) does each cheap rule recover? Overlap coefficient "
       "|A n B| / min(|A|, |B|); a random subset overlaps about `keep` by chance.\n\n"
       "**Claim tested** (METHOD.md): **claim 5**, LossDiff-IRM overlaps the TIF selection more than either "
       "proxy alone (paper: 0.73-0.78 against 0.60-0.70), here across keep ratios 0.5-0.8.\n\n"
       + HW.format(ci="about 15 s", full="about 3 minutes (seconds once notebook 02 ran)", seeds="3 seeds",
                   name="03_fusion")),
    params_cell(COMMON_PARAMS + '''
keeps = [0.5, 0.56, 0.64, 0.72, 0.8]  # keep ratios of the sweep
venn_keep = 0.64                      # keep ratio of the Venn diagram'''),
    code(SETUP),
    code('''tables = A.score_tables(p, seeds)
sweep = pd.concat([A.overlap_sweep(t, keeps, select_params=p.select).assign(seed=s) for s, t in tables.items()],
                  ignore_index=True)
sweep.pivot_table(index="keep", columns="rule", values="overlap").round(3)'''),
    code('''A.show(A.plot_overlap_sweep(sweep), FIG / f"03_{p.run.name}_overlap_sweep.png")'''),
    md("## Who recovers which TIF pairs\nSeed 0's selections at `venn_keep`: TIF, LossDiff band, IRM band. "
       "LossDiff-IRM keeps (mostly) pairs in the LossDiff and IRM circles' intersection."),
    code('''t0 = tables[seeds[0]]
venn = A.venn_counts(t0, venn_keep, ("tif", "lossdiff", "irm"), p.select)
A.show(A.plot_venn3(venn, f"selections at keep {venn_keep:g}, {venn['n']} pairs (seed {seeds[0]})"),
       FIG / f"03_{p.run.name}_venn.png")
fused = A.selection(t0, "lossdiff-irm", venn_keep, p.select)
tif = A.selection(t0, "tif", venn_keep, p.select)
print(f"LossDiff-IRM keeps {fused.sum()} pairs; {(fused & tif).sum()} of them are in TIF's {tif.sum()}")'''),
    md("## Conclusion"),
    code('''claim5 = A.conclude_overlap(sweep)
A.save_json({"notebook": "03_fusion", "scale": scale, "seeds": seeds, "claim5": claim5,
             "overlap": sweep.groupby(["keep", "rule"]).overlap.mean().reset_index().to_dict("records"),
             "venn": venn, "seconds": round(time.time() - t_start, 1)}, FIG / f"03_{p.run.name}_summary.json")
display(Markdown(claim5))
print(f"done in {time.time() - t_start:.0f} s")'''),
])

# ---------------------------------------------------------------------------------------------- 04
nb("04_benchmarks", [
    md("# 04 - Benchmarks: every rule at the paper's budget, per model family\n\n"
       "Each rule keeps `keep` of D_tr (default 0.64, the paper's budget), continues from the warm-up "
       "model with the same schedule, and is judged against the SFT model on the test prompts by the "
       "world's oracle (WinRate, 95% bootstrap interval, prompts resampled within seeds). \"vs full\" is the "
       "paired difference against full data. `oracle` drops exactly the mislabelled pairs (an upper "
       "reference no real rule can reach). The paper's table (Llama-3.1-8B, DPO, 64% of UltraFeedback, "
       "GPT-4 judge) is shown beside ours; its numbers are not comparable in level, only in ordering.\n\n"
       "**Claim tested** (METHOD.md): **claim 6**, LossDiff-IRM at 50-64% of the data beats full data and "
       "the filters (annotation-score gap, reward-model margin) on WinRate. Set `objective = \"slic\"` for "
       "the SLiC (hinge) objective.\n\n"
       + HW.format(ci="about 40 s (one family)", full="about 25 minutes (four families)", seeds="3 seeds",
                   name="04_benchmarks")),
    params_cell(COMMON_PARAMS + '''
families = None                     # tiny families (model.family) run from params_file; None: llama at ci scale, all four at full
params_files = None                 # or one params file per family (e.g. real checkpoints); wins over families
rules = None                        # None: every rule (full, oracle, random, top-if, tif, lossdiff, irm, lossdiff-irm, rm-margin, annotation-gap)
keep = 0.64                         # keep ratio of every rule
objective = "dpo"                   # "dpo" (sigmoid) or "slic" (hinge)'''),
    code(SETUP),
    code('''families = families or (["llama"] if scale == "ci" else list(A.TINY_FAMILIES))
rules = rules or list(A.BENCH_RULES)
fam_params = A.family_params(params_file, families, params_files, scale,
                             list(overrides) + [f"train.objective={objective}"], run_root)
print(f"families: {list(fam_params)}; rules: {rules}; keep {keep}; objective {objective}")'''),
    code('''results = {fam: A.rules_experiment(fp, seeds, rules, keep) for fam, fp in fam_params.items()}
summaries = {fam: r["summary"] for fam, r in results.items()}'''),
    md("## WinRate against SFT (%), and difference against full data (points)"),
    code('''table = A.benchmark_table(summaries)
table'''),
    code('''A.show(A.plot_benchmark(summaries), FIG / f"04_{p.run.name}_{objective}_benchmark.png")'''),
    md("## The paper's table\nLlama-3.1-8B, DPO, 64% of UltraFeedback, WinRate % against the SFT model."),
    code('''A.PAPER_WINRATES'''),
    md("## Conclusion"),
    code('''claim6 = A.conclude_benchmark(results)
for fam, s in summaries.items():
    s.assign(family=fam).to_csv(FIG / f"04_{p.run.name}_{objective}_{fam}_summary.csv", index=False, float_format="%.4f")
A.save_json({"notebook": "04_benchmarks", "scale": scale, "seeds": seeds, "objective": objective, "keep": keep,
             "claim6": claim6, "table": table.reset_index().to_dict("records"),
             "seconds": round(time.time() - t_start, 1)}, FIG / f"04_{p.run.name}_{objective}_summary.json")
display(Markdown(claim6))
print(f"done in {time.time() - t_start:.0f} s")'''),
])

# ---------------------------------------------------------------------------------------------- 05
nb("05_model_dependence", [
    md("# 05 - Does the value of a pair depend on the model?\n\n"
       "The same training pairs (same world seed) scored by exact IF under each tiny family (Llama-, Qwen-, "
       "Pythia- and GPT-2-style models, each with its own SFT, warm-up and validation models). If data "
       "value were a property of the pair alone, the families would rank the pairs alike.\n\n"
       "**Claim tested** (METHOD.md): **claim 1**, IF of the same pairs disagrees across model families "
       "(the paper: a 0.6B Qwen and a 1B Llama; the same pair can help one and hurt the other). Shown: "
       "Pearson/Spearman of IF between families, the overlap of their TIF selections, and the share of "
       "pairs whose IF changes sign, split by correct and mislabelled pairs.\n\n"
       "**Control.** Two families differ in architecture *and* in their random initialization. The "
       "first family is therefore also trained from other initialization seeds on the same pairs "
       "(`init_seeds`): the claim holds only if families disagree more than initializations do.\n\n"
       + HW.format(ci="about 30 s", full="about 10 minutes (four families)", seeds="3 seeds",
                   name="05_model_dependence")),
    params_cell(COMMON_PARAMS + '''
families = ["llama", "qwen", "pythia", "gpt2"]  # tiny families run from params_file
params_files = None                 # or one params file per family; wins over families
keep = 0.64                         # keep ratio of the TIF selections compared
agree = 0.9                         # mean cross-family Spearman at or above which we call the rankings "the same"
init_seeds = None                   # control: other init seeds of the first family; None: [100] at ci, [100, 101] at full; [] skips
margin = 0.1                        # cross-family Spearman must be this much below the within-family one'''),
    code(SETUP),
    code('''fam_params = A.family_params(params_file, families, params_files, scale, overrides, run_root)
mds = {}
for s in seeds:
    mds[s] = A.model_dependence(A.family_tables(fam_params, s), keep, p.select)
md0 = mds[seeds[0]]
print(f"{len(md0.if_values)} shared pairs, families {list(fam_params)}")
pairs = pd.concat([m.pairs().assign(seed=s) for s, m in mds.items()], ignore_index=True)
pairs.groupby(["family_a", "family_b"], sort=False).mean(numeric_only=True).drop(columns="seed")'''),
    md("## IF across families (seed of the first run)"),
    code('''display(md0.spearman.round(3))
A.show(A.plot_dependence(md0), FIG / f"05_{p.run.name}_model_dependence.png")'''),
    md("## Control: one family, several initializations\nThe same pairs, world seed of the first run, the first "
       "family trained from other initialization seeds."),
    code('''if init_seeds is None:
    init_seeds = [100] if scale == "ci" else [100, 101]
first = next(iter(fam_params.values()))
control = A.model_dependence(A.init_control_tables(first, seeds[0], init_seeds), keep, p.select) if init_seeds else None
control.pairs() if control is not None else "control skipped (init_seeds = [])"'''),
    md("## Conclusion"),
    code('''claim1 = A.conclude_model_dependence(list(mds.values()), agree, control, margin)
A.save_json({"notebook": "05_model_dependence", "scale": scale, "seeds": seeds, "claim1": claim1,
             "pairs": pairs.to_dict("records"),
             "control": None if control is None else control.pairs().to_dict("records"),
             "seconds": round(time.time() - t_start, 1)}, FIG / f"05_{p.run.name}_summary.json")
display(Markdown(claim1))
print(f"done in {time.time() - t_start:.0f} s")'''),
])
