"""The ``merge`` collector: several collectors' results under one dict."""
