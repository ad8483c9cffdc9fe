"""The rolling workflow end to end: workflow files, the study, its outputs, the demo."""
