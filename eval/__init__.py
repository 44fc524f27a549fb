"""Evaluation harness: not built yet, see the issue tracker."""
