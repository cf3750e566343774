"""Multi-stage studies the notebooks and the batch share: each trains, scores and evaluates through
the pipeline's cached stages (tifkit.pipeline), so a rerun trains nothing.

- `score_tables`: {seed: score table};
- IF groups (claim 2): `train_on_groups` (continuation on each group with D_val curves),
  `validation_metrics`, `evaluate_models`, `group_experiment`;
- subsets trained in worker processes (claims 2, 3): `subset_experiment` over `group_specs` (IF
  thirds), `band_specs` (TIF bands of fixed width at moving centres: `band_sweep`, `band_mask`) and
  rule specs, with D_val curves and WinRates;
- rules (claims 3, 6): `rules_experiment` (tifkit.batch.run_seed per seed);
- model dependence (claim 1): `family_tables`, `init_control_tables` (other `run.model_seed`s),
  `family_score_tables` (every family and the control in worker processes), and the transfer across
  families: `transfer_plan`, `transfer_experiment`, `transfer_summary`;
- benchmark (claim 6): `run_variants` (families x objectives x seeds x rules in worker processes),
  `benchmark_summary` (WinRate and SingleScore with hierarchical intervals), `paired_rule_difference`;
- cost (claim 7): `scoring_cost`;
- the decisions the paper leaves open (claims 3-6, notebook 06): `decision_sweep` (settings in
  worker processes), `decision_settings`, `decision_statistics`, `decision_claims`, `rank_decisions`,
  `decision_robustness`.

Modules: `core` (score tables, IF-group training, evaluation, rules, cost), `subsets` (IF groups and
the band sweep in worker processes), `benchmark`, `families` (model dependence and transfer),
`decisions` (notebook 06). Every public name is importable from here. Training goes through
tifkit.pipeline.train_on / continue_stage (the batch's seeds and caches), worker processes through
tifkit.workers.quiet_pool_map (the kit's one pool, its workers quiet; the benchmark through the batch's
tifkit.batch.run_rule_tasks);
nothing here imports the notebook layer.
"""
from tifkit.experiments.core import (  # noqa: F401
    bench_rules, score_tables, validation_metrics, GroupTraining, train_on_groups, evaluate_models, group_experiment, rules_experiment, scoring_cost,
)
from tifkit.experiments.subsets import (  # noqa: F401
    group_specs, band_label, band_specs, band_selection, band_mask, spec_mask, subset_experiment, band_sweep,
)
from tifkit.experiments.benchmark import (  # noqa: F401
    run_variants, aligned_rule_rows, paired_rule_difference, benchmark_summary,
)
from tifkit.experiments.families import (  # noqa: F401
    family_tables, init_control_params, init_control_tables, scores_task, parallel_score_tables, check_same_pairs, family_score_tables, transfer_plan, train_ids_task, transfer_experiment, transfer_summary,
)
from tifkit.experiments.decisions import (  # noqa: F401
    OPEN_DECISIONS, DECISION_CLAIMS, WINRATE_CLAIMS, CLAIM_RANGES, VERDICTS, statistic_verdict, decision_settings, setting_params, decision_statistics, claim_statistics, core_table_task, t_interval, rank_decisions, decision_claims, decision_robustness, decision_sweep,
)
