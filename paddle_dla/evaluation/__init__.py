"""ImageNet validation: data layouts, the reference preprocessing, and the evaluation loop."""
