"""Apply trained models to cases: sliding-window inference, ensembles, export to the scan's space."""
