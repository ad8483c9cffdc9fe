"""Models and datasets that run without qlib: a panel dataset, a scikit-learn model adapter
and a synthetic market."""
