"""The networks autopipe trains, their constructor arguments and checkpoints, and the trained predictors predict and
evaluate read back: the layer below train, predict and evaluate (none of those stages imports another for them)."""
