"""The meta-learner: inputs, models, dataset building, fitting and checkpoints."""
