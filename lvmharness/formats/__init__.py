"""File formats other than the record, torch-free: the graph and layers documents."""
