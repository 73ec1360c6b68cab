"""The mutations scripts/mutate.py applies: each breaks one line of maths or one safeguard.

A mutation names the file, the exact text (it must occur once), its replacement, why the break
matters, and the fast tests that must fail under it. Keep each selection small: the tests that
should notice, not the suite.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    why: str
    tests: tuple[str, ...]


LOSSES = "alignment/losses/preference.py"
FAMILY = "alignment/losses/dpo_family.py"
T_FAMILY = "tests/losses/test_dpo_family.py"
T_LOSSES = "tests/losses/test_preference.py"
T_METHODS = "tests/test_methods_registry.py"
T_REFPASS = "tests/test_reference_pass.py"
T_INIT = "tests/test_init_adapter.py"
T_STACKED = "tests/test_stacked.py"
T_ACCUM = "tests/test_grad_accum_invariance.py"

MUTATIONS: tuple[Mutation, ...] = (
    # -- pi_ref: which model the reference pass runs --------------------------------------------
    Mutation(
        "trainer_reference_adapter_enabled",
        "alignment/trainer.py",
        "with torch.no_grad(), reference_mode(unwrapped):",
        "with torch.no_grad():",
        "the online reference pass runs the trained policy itself (pi_ref = pi_theta)",
        (T_REFPASS,),
    ),
    Mutation(
        "refcache_reference_adapter_enabled",
        "alignment/refcache.py",
        "    with reference_mode(model):\n        for start",
        "    with torch.no_grad():\n        for start",
        "the cached reference is computed with the trainable adapter (and its dropout) active",
        (T_REFPASS, T_INIT),
    ),
    Mutation(
        "init_reference_is_the_bare_base",
        "alignment/models/reference.py",
        "    if not has_reference_adapter(model):",
        "    if True:",
        "a run from an init adapter (a stacked stage) references the bare base, not that adapter",
        (T_INIT,),
    ),
    Mutation(
        "init_reference_keeps_dropout",
        "alignment/models/reference.py",
        "            module.lora_dropout[REFERENCE_ADAPTER] = torch.nn.Identity()",
        "            pass",
        "the frozen reference copy applies LoRA dropout in train mode: a random pi_ref",
        (T_INIT,),
    ),
    Mutation(
        "stacked_stage_starts_fresh",
        "alignment/stacked.py",
        "    if i > 0:\n        previous",
        "    if False:\n        previous",
        "every stage of a stacked run starts from a fresh LoRA with the base as pi_ref",
        (f"{T_STACKED}::test_three_stages_nest_under_one_parent_run",),
    ),
    Mutation(
        "stacked_stages_not_nested",
        "alignment/stacked.py",
        '        tags["mlflow.parentRunId"] = parent_run_id',
        "        pass",
        "the stages' MLflow runs are not nested under the command's parent run",
        (f"{T_STACKED}::test_three_stages_nest_under_one_parent_run",),
    ),
    # -- the reference cache --------------------------------------------------------------------
    Mutation(
        "refcache_key_ignores_init_adapter",
        "alignment/refcache.py",
        '        identity.append(["init_adapter", adapter_fingerprint(m.init_adapter)])',
        "        pass",
        "two stacked stages (different init adapters) share one reference cache entry",
        (f"{T_INIT}::test_cache_key_follows_the_init_adapters_weights",),
    ),
    Mutation(
        "refcache_key_ignores_quantization",
        "alignment/refcache.py",
        "        m.quantization,\n",
        "",
        "a 4-bit run reuses the full-precision run's reference log-probs",
        ("tests/test_refcache.py::test_key_covers_the_base_model_not_the_method",),
    ),
    Mutation(
        "refcache_pair_order_ignored",
        "alignment/refcache.py",
        "out[name] = (torch.where(swap, second, first), torch.where(swap, first, second))",
        "out[name] = (first, second)",
        "a cache hit hands chosen and rejected reference log-probs over swapped for some rows",
        (T_REFPASS,),
    ),
    # -- DPO ------------------------------------------------------------------------------------
    Mutation(
        "dpo_sign",
        LOSSES,
        "smoothed_sigmoid_loss(beta * (chosen_ratio - rejected_ratio), label_smoothing)",
        "smoothed_sigmoid_loss(beta * (rejected_ratio - chosen_ratio), label_smoothing)",
        "DPO prefers the rejected response",
        (T_LOSSES,),
    ),
    Mutation(
        "dpo_beta_on_chosen_only",
        LOSSES,
        "smoothed_sigmoid_loss(beta * (chosen_ratio - rejected_ratio), label_smoothing)",
        "smoothed_sigmoid_loss(beta * chosen_ratio - rejected_ratio, label_smoothing)",
        "beta scales only the chosen log-ratio",
        (T_LOSSES,),
    ),
    Mutation(
        "dpo_reference_free_not_zeroed",
        LOSSES,
        "        ref_chosen_logps = ref_rejected_logps = torch.zeros_like(policy_chosen_logps)",
        "        pass",
        "reference_free DPO still subtracts the reference log-probs it is given",
        (T_LOSSES,),
    ),
    Mutation(
        "label_smoothing_ignored",
        LOSSES,
        "    if label_smoothing == 0.0:\n        return -F.logsigmoid(z)",
        "    if True:\n        return -F.logsigmoid(z)",
        "conservative DPO's label smoothing has no effect",
        (T_LOSSES,),
    ),
    Mutation(
        "label_smoothing_sign",
        LOSSES,
        "- label_smoothing * F.logsigmoid(-z)",
        "+ label_smoothing * F.logsigmoid(-z)",
        "the smoothed term rewards the flipped preference instead of penalising it",
        (T_LOSSES,),
    ),
    Mutation(
        "dpo_sft_weight_ignored",
        LOSSES,
        '        loss = loss + sft_weight * nll\n        metrics["dpo/sft_nll"]',
        '        metrics["dpo/sft_nll"]',
        "DPO's NLL term (sft_weight, RPO; the demo's setting) is logged but never trained on",
        ("tests/losses/test_dpo_trl_parity.py",),
    ),
    Mutation(
        "dpo_sft_nll_per_micro_batch",
        LOSSES,
        "sft_loss(policy_chosen_logps, chosen_tokens, chosen_tokens_total).loss",
        "sft_loss(policy_chosen_logps, chosen_tokens).loss",
        "DPO's NLL term averages over each micro-batch's tokens: accumulation changes the gradient",
        (f"{T_ACCUM}::test_one_by_eight_equals_eight_by_one[dpo_sft_weight]",),
    ),
    # -- Factual-DPO ----------------------------------------------------------------------------
    Mutation(
        "factual_drop_delta_offset",
        LOSSES,
        "    z = beta * (margin - offset) if delta_inside_beta else beta * margin - offset",
        "    z = beta * margin",
        "Factual-DPO++ without its Delta offset (plain DPO at every Delta)",
        (T_LOSSES,),
    ),
    Mutation(
        "factual_offset_sign",
        LOSSES,
        "    offset = delta * (h_l - h_w).to(chosen_ratio.dtype)",
        "    offset = delta * (h_w - h_l).to(chosen_ratio.dtype)",
        "the offset favours the hallucinated response",
        (T_LOSSES,),
    ),
    Mutation(
        "factual_no_flip",
        "alignment/data/sources.py",
        "            ex = replace(ex, chosen=ex.rejected, rejected=ex.chosen, h_w=0, h_l=1)",
        "            ex = replace(ex, h_w=0, h_l=1)",
        "(1, 0) pairs are relabelled but not swapped: the hallucinated answer stays preferred",
        (f"{T_METHODS}::test_factual_dpo_transform_counts_buckets_and_flips_1_0_pairs",),
    ),
    # -- the DPO family (IPO, SimPO, ORPO) ------------------------------------------------------
    Mutation(
        "ipo_target_without_the_half",
        FAMILY,
        "    losses = (h - 1 / (2 * beta)) ** 2",
        "    losses = (h - 1 / beta) ** 2",
        "IPO regresses the margin to 1/beta instead of 1/(2 beta)",
        (T_FAMILY,),
    ),
    Mutation(
        "ipo_not_length_normalised",
        FAMILY,
        "    h = chosen - rejected\n",
        "    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps"
        " - ref_rejected_logps)\n",
        "IPO's margin uses summed log-ratios, not per-token means",
        (T_FAMILY,),
    ),
    Mutation(
        "simpo_drop_gamma",
        FAMILY,
        "    z = beta * (chosen - rejected) - gamma",
        "    z = beta * (chosen - rejected)",
        "SimPO without its target reward margin gamma",
        (T_FAMILY,),
    ),
    Mutation(
        "orpo_drop_sft_term",
        FAMILY,
        "    return LossOutput(nll + beta * or_loss.mean(), metrics)",
        "    return LossOutput(beta * or_loss.mean(), metrics)",
        "ORPO without its SFT term (the odds-ratio penalty alone)",
        (T_FAMILY,),
    ),
    Mutation(
        "orpo_probability_ratio",
        FAMILY,
        "    log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))",
        "    log_odds = chosen - rejected",
        "ORPO's log odds ratio becomes a log probability ratio",
        (T_FAMILY,),
    ),
    Mutation(
        "orpo_nll_per_micro_batch",
        FAMILY,
        "    total = chosen_tokens.sum() if chosen_tokens_total is None else chosen_tokens_total",
        "    total = chosen_tokens.sum()",
        "ORPO's SFT term averages over each micro-batch's tokens, not the window's",
        (f"{T_ACCUM}::test_one_by_eight_equals_eight_by_one[orpo]",),
    ),
    # -- CITA -----------------------------------------------------------------------------------
    Mutation(
        "cita_drop_lambda_kl",
        LOSSES,
        "        loss = loss + lambda_kl * kl",
        "        loss = loss",
        "CITA without its lambda * KL anchor",
        (T_LOSSES, T_METHODS),
    ),
    Mutation(
        "cita_reference_free_inverted",
        LOSSES,
        "    s_w, s_l = (pc, pr) if reference_free else (pc - rc, pr - rr)",
        "    s_w, s_l = (pc, pr) if not reference_free else (pc - rc, pr - rr)",
        "stacked CITA drops its reference log-ratios (and the paper's CITA would need them)",
        (T_LOSSES, T_METHODS),
    ),
    Mutation(
        "cita_seq_sq_not_squared",
        LOSSES,
        'return seq_kl(pc, pr, rc, rr, squared=estimator == "seq_sq")',
        "return seq_kl(pc, pr, rc, rr, squared=False)",
        "kl_estimator=seq_sq silently computes the signed log-ratio",
        (T_LOSSES, T_METHODS),
    ),
    Mutation(
        "cita_log_eps_ignored",
        LOSSES,
        "if log_eps else -F.logsigmoid(margin)",
        "if False else -F.logsigmoid(margin)",
        "log_eps=1e-10 no longer reproduces the v1 code's capped loss",
        (T_LOSSES,),
    ),
    Mutation(
        "cita_drop_sft_term",
        LOSSES,
        "        loss = loss + lambda_sft * nll",
        "        loss = loss",
        "CITA's lambda_sft * NLL term (the paper's unified loss) is logged but not trained",
        (T_LOSSES, T_METHODS),
    ),
    Mutation(
        "dpo_needs_reference_inverted",
        "alignment/methods/grid.py",
        "needs_reference=lambda cfg: not cfg.reference_free",
        "needs_reference=lambda cfg: cfg.reference_free",
        "DPO skips the reference forward it needs (and runs one it does not)",
        (f"{T_METHODS}::test_what_each_method_needs",),
    ),
    Mutation(
        "logits_to_keep_off_by_one",
        "alignment/forward.py",
        'return batch["input_ids"].shape[1] - batch["min_prompt_len"] + 1',
        'return batch["input_ids"].shape[1] - batch["min_prompt_len"]',
        "completion-only logits drop the position that predicts the first response token",
        ("tests/losses/test_logprobs.py", "tests/test_perf_equivalence.py"),
    ),
    Mutation(
        "skip_step_keeps_gradients",
        "alignment/guards.py",
        "            p.grad = None\n",
        "            pass\n",
        "train.nan_policy=skip_step leaves the NaN gradients for the next optimizer step",
        ("tests/test_nan_guard.py",),
    ),
    Mutation(
        "token_kl_reversed",
        "alignment/losses/logprobs.py",
        "total = total + (logp.exp() * (logp - logr)).sum()",
        "total = total + (logr.exp() * (logr - logp)).sum()",
        "the exact KL is computed as KL(pi_ref || pi_theta)",
        ("tests/losses/test_logprobs.py", T_METHODS),
    ),
    Mutation(
        "logps_shift_off_by_one",
        "alignment/losses/logprobs.py",
        "    return logits[:, :-1], labels[:, labels.shape[1] - k + 1 :]",
        "    return logits[:, 1:], labels[:, labels.shape[1] - k + 1 :]",
        "each response token is scored by the logits of the position after it",
        ("tests/losses/test_logprobs.py",),
    ),
    # -- SFT and gradient accumulation ----------------------------------------------------------
    Mutation(
        "sft_token_mean_per_micro_batch",
        "alignment/losses/sft.py",
        "    total = chosen_tokens.sum() if chosen_tokens_total is None else chosen_tokens_total",
        "    total = chosen_tokens.sum()",
        "SFT averages over each micro-batch's tokens, not the accumulation window's",
        (f"{T_ACCUM}::test_one_by_eight_equals_eight_by_one[sft]",),
    ),
    Mutation(
        "window_tokens_not_averaged",
        "alignment/trainer.py",
        "    counts = (counts / n).float()",
        "    counts = counts.float()",
        "the window's token count is not divided by its micro-batch count",
        (f"{T_ACCUM}::test_one_by_eight_equals_eight_by_one[sft]",),
    ),
    # -- GRIT -----------------------------------------------------------------------------------
    Mutation(
        "grit_precondition_sides_swapped",
        "alignment/optim/grit.py",
        "left = group.inv_a if grit_pairing else group.inv_g  # applied to A's gradient\n"
        "            right = group.inv_g if grit_pairing else group.inv_a",
        "left = group.inv_g if grit_pairing else group.inv_a  # applied to A's gradient\n"
        "            right = group.inv_a if grit_pairing else group.inv_g",
        "GRIT preconditions A's gradient with the output-gradient factor and B's with the input's",
        ("tests/optim/test_grit.py::test_pairing_puts_the_right_factor_on_each_side",),
    ),
    # -- safeguards -----------------------------------------------------------------------------
    Mutation(
        "nan_guard_disabled",
        "alignment/guards.py",
        "        if math.isfinite(loss_value) and math.isfinite(norm_value):",
        "        if True:",
        "a NaN loss or gradient reaches the optimizer step",
        ("tests/test_nan_guard.py",),
    ),
    Mutation(
        "secret_scrub_disabled",
        "alignment/config/secrets.py",
        "        text = KEY_PATTERN.sub(HIDDEN, tree)",
        "        text = tree",
        "an API key in a config value is written to resolved_config.yaml and MLflow",
        ("tests/test_secrets.py",),
    ),
    Mutation(
        "flatten_keeps_secret_names",
        "alignment/tracking/redaction.py",
        "elif SECRET_KEY.search(str(key)) and not is_env_ref(value):",
        "elif False:",
        "a secret-named config key is logged as an MLflow param in clear",
        ("tests/test_secrets.py", "tests/tracking/test_tracking_journal.py"),
    ),
    # -- evaluation -----------------------------------------------------------------------------
    Mutation(
        "aqi_masked_pooling_includes_padding",
        "alignment/evaluation/aqi.py",
        "return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)",
        "return hidden.mean(1)",
        "AQI's mean_masked pooling averages padding positions too",
        ("tests/evaluation/test_aqi.py",),
    ),
    # -- MAC and AlignX-repro ------------------------------------------------------------------
    Mutation(
        "mac_axis_attention_unscaled",
        "alignment/models/mac.py",
        "q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])",
        "q @ k.transpose(-1, -2)",
        "MAC's per-token axis attention drops the 1/sqrt(d) scale (sharper than the reference's)",
        ("tests/models/test_mac.py::test_shapes_rows_sum_to_one_and_a_hand_computed_case",),
    ),
    Mutation(
        "mac_axis_window_tokens_dropped",
        "alignment/trainer.py",
        'batch.axis_tokens_total = self._window_tokens.get("axis")',
        "batch.axis_tokens_total = None",
        "MAC's per-axis token means use each micro-batch's own counts: 1x8 != 8x1",
        (f"{T_ACCUM}::test_one_by_eight_equals_eight_by_one[mac]",),
    ),
    Mutation(
        "alignx_calibration_swaps_lambdas",
        "alignment/alignx/routing.py",
        "p_cal = (lambda1 * p_nat + lambda2 * p_frac)",
        "p_cal = (lambda2 * p_nat + lambda1 * p_frac)",
        "AlignX's calibration weighs the fractal calibrator by lambda1 (0.6) and natural by 0.4",
        ("tests/alignx/test_routing.py::test_calibration_by_hand_and_lambda1_1_is_natural_only",),
    ),
)
