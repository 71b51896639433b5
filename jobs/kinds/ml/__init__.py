"""What the ML kinds share: models, data preparation, the training loop, checkpoints, the
search space, the trial budget, the machines' seed data and SDV's progress. Imported only
inside task processes (torch, optuna, sdv live in the trainer and gan images)."""
