"""One package per method, in peft's shape: config.py, layer.py, model.py."""
