"""Learning theory made executable: testable learning, provable pretraining gains."""

__all__ = ["tester_learner", "unsupervised_pretraining"]  # submodules, one per paper or shared piece
