"""Evaluation runs and their reports (scoring existing predictions now; the method benchmark later)."""
