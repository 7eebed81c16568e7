"""ctmc package."""
