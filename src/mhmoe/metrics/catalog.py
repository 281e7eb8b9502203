"""Every metric a method's results may hold, with its label and which way is better: one table that reports,
seed summaries and declared claims all read."""

METRICS = {
    # key: (label, +1 when higher is better / -1 when lower is better, what "better" means)
    "op": ("OP", 1, "scores higher (OP)"),
    "bwt": ("BWT", 1, "forgets less (accuracy BWT)"),
    "loss_bwt": ("loss-BWT", -1, "forgets less (loss-BWT)"),
    "fwt": ("FWT", 1, "transfers more forward (FWT)"),
    "learned": ("learned (R[i][i])", 1, "learned the earlier tasks better (mean R[i][i], i < n)"),
    "learned_loss": ("learned loss (L[i][i])", -1, "fit the earlier tasks better (mean L[i][i], i < n)"),
    "final_old_loss": ("final old-task loss", -1, "ends with the earlier tasks' answers likelier (mean L[n-1][i])"),
    "anytime_avg": ("anytime avg", 1, "scores higher at any time (anytime average)"),
    "final_op": ("final OP", 1, "scores higher at the end of the stream (final OP)"),
    "peak_forgetting": ("forgetting from peak", -1, "forgets less from its peaks"),
    "loss_peak_forgetting": ("loss rise from best", -1, "forgets less (loss rise from best)"),
}
"""Every metric a method's results may hold: R's (with task boundaries) and the anytime record's (with
stream.eval_every). A summary covers the ones each method has."""
