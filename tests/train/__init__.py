"""Training: building objects from configs, the panel dataset, the model adapter, the market."""
