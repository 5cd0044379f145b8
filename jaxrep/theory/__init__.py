"""Learning theory made executable: testable learning, provable pretraining gains,
random-feature attention, deep kernel machines."""

__all__ = ["attention_random_features", "deep_kernel_machines", "tester_learner",
           "unsupervised_pretraining"]  # submodules, one per paper or shared piece
