"""Learning theory made executable: testable learning, provable pretraining gains."""
