"""Causal representation learning and causal discovery: PAC invariance (pac_invariance),
causal de Finetti (de_finetti), Rep4Ex (rep4ex), robust self-supervised training with
out-of-domain unlabeled data (robust_self_supervised)."""

__all__ = ["de_finetti", "de_finetti_binary", "pac_invariance", "rep4ex",
           "robust_self_supervised"]  # submodules, one per paper or shared piece
