"""AlignX-repro: a labelled reconstruction of AlignX (spec/alignx.md).

Stage 1 trains one LoRA expert per axis (helpfulness, harmlessness, honesty) on prompts with an
axis-specific injected prefix, and a shared latent projector (k = 256). Stage 2 trains the MoCaE
router (W_r: 3 x 1024, T = 1) and fits the natural/fractal calibrators (lambda1 = 0.6,
lambda2 = 0.4, eps = 0.05); the experts are then mixed over logits or over adapter deltas.

The maths is in plain functions: `prefixes` (prompt injection), `task_vectors` (task arithmetic
with gamma), `latent` (pooling and the projector), `routing` (router and calibrators), `mixing`
(weighted expert deltas inside the LoRA layers, logit mixing). Around them: `experts` (the LoRA
experts in one peft model), `mocae` (the learned state besides the experts), `fit` (fitting it on
pooled prompt states), `model` (the mixture for inference and evaluation), `stages` and `locate`
(the two-stage training driver that alignment/methods/alignx.py registers). The reference code
never trained its stage 2 (spec/alignx.md section 2); every piece here that the reference does
not define is a documented option.
"""
