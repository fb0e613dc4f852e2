"""Preprocessing: from a raw case to the arrays the trainers read."""
