"""Scoring (RL rewards and evaluation metrics from one core), benchmark runners and reports."""
