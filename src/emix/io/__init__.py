"""Reading and writing: model files (never pickle) and data tables."""
